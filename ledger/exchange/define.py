"""Define-XML 2.1 of an SDTM export, checked against the official schema (issue 15).

``define.xml`` is an ODM 1.3.2 document with the Define-XML 2.1 extensions
describing every dataset written: an ItemGroupDef per dataset (class,
structure, keys, the file it is in), an ItemDef per variable (type, length,
label, origin, codelist; OIDs ``IT.<DATASET>.<VARIABLE>``), a MethodDef for
every Derived variable (its derivation), a CommentDef for the other variables
that need one, a CodeList per codelist (MedDRA and ISO 3166 as external
dictionaries), and value-level metadata for each SUPP--'s QVAL by QNAM.  The
SDTMIG version is the one standard of the document (``def:Standards``).

The export validates the document against the Define-XML 2.1 schema that the
odmlib package ships (:func:`define_schema`) and reports the outcome.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib.metadata import version
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from lxml import etree

from ledger.domain.events import utc_text
from ledger.exchange.sdtmig import (
    QUALIFIERS,
    SDTMIG_VERSION,
    Codelist,
    Dataset,
    Qualifier,
    Variable,
    codelists,
)
from ledger.exchange.xport import text_length

ODM = "http://www.cdisc.org/ns/odm/v1.3"
DEF = "http://www.cdisc.org/ns/def/v2.1"
XLINK = "http://www.w3.org/1999/xlink"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
STANDARD = f"STD.SDTMIG.{SDTMIG_VERSION}"
SOURCES = {"Collected": "Investigator", "Derived": "Sponsor", "Assigned": "Sponsor"}


def define_schema() -> etree.XMLSchema:
    """The official Define-XML 2.1 schema (with the ODM 1.3.2 it extends), as odmlib ships it."""
    with as_file(files("odmlib") / "schemas" / "define" / "2.1" / "define2-1-0.xsd") as path:
        return etree.XMLSchema(etree.parse(str(path)))


@dataclass(frozen=True)
class StudyMetadata:
    """What ``define.xml`` says of the study: its code, title, planned arm and sites."""

    study: str
    title: str
    arm: str
    sites: tuple[str, ...]


def write_define(
    datasets: Mapping[str, Dataset],
    study: StudyMetadata,
    path: Path,
    *,
    created: dt.datetime,
    format: str,
    dictionary: str | None = None,
) -> dict[str, Any]:
    """Write ``define.xml`` for ``datasets`` to ``path``; the file, its schema and whether it is valid.

    ``format`` names the files the leaves point to (``csv`` the CSV files, else
    the transport files); ``dictionary`` is the AE coding dictionary and version.
    """
    document = define_document(datasets, study, created=created, format=format, dictionary=dictionary)
    tree = etree.ElementTree(document)
    tree.write(str(path), xml_declaration=True, encoding="UTF-8", pretty_print=True)
    schema = define_schema()
    valid = schema.validate(tree)
    return {
        "file": path.name,
        "schema": "Define-XML 2.1.0",
        "valid": valid,
        "errors": [f"line {e.line}: {e.message}" for e in schema.error_log] if not valid else [],
    }


def define_document(
    datasets: Mapping[str, Dataset],
    study: StudyMetadata,
    *,
    created: dt.datetime,
    format: str,
    dictionary: str | None,
) -> etree._Element:
    """The ``ODM`` root element of ``define.xml``."""
    root = etree.Element(
        f"{{{ODM}}}ODM",
        nsmap={None: ODM, "def": DEF, "xlink": XLINK},
        attrib={
            "FileType": "Snapshot",
            "FileOID": f"DEF.{study.study}.SDTM",
            "ODMVersion": "1.3.2",
            "CreationDateTime": utc_text(created),
            "Originator": study.study,
            "SourceSystem": "trial-ledger",
            "SourceSystemVersion": version("trial-ledger"),
            f"{{{DEF}}}Context": "Submission",
        },
    )
    node = _add(root, "Study", OID=f"STDY.{study.study}")
    global_variables = _add(node, "GlobalVariables")
    _add(global_variables, "StudyName").text = study.study
    _add(global_variables, "StudyDescription").text = study.title
    _add(global_variables, "ProtocolName").text = study.study
    mdv = _add(
        node,
        "MetaDataVersion",
        OID=f"MDV.{study.study}.SDTMIG.{SDTMIG_VERSION}",
        Name=f"{study.study} SDTM datasets",
        Description=f"SDTMIG {SDTMIG_VERSION} tabulation datasets of {study.study}",
        **{f"{{{DEF}}}DefineVersion": "2.1.0"},
    )
    standards = _add(mdv, "Standards", ns=DEF)
    _add(
        standards,
        "Standard",
        ns=DEF,
        OID=STANDARD,
        Name="SDTMIG",
        Type="IG",
        Version=SDTMIG_VERSION,
        Status="Final",
    )
    lists = codelists(study.arm, study.sites, dictionary)
    supps = [d for d in datasets.values() if d.name.startswith("SUPP")]
    for dataset in supps:
        _value_list(mdv, dataset)
    for dataset in supps:
        for qnam in _qnams(dataset):
            clause = _add(mdv, "WhereClauseDef", ns=DEF, OID=f"WC.{dataset.name}.QNAM.{qnam}")
            check = _add(
                clause,
                "RangeCheck",
                Comparator="EQ",
                SoftHard="Soft",
                **{f"{{{DEF}}}ItemOID": f"IT.{dataset.name}.QNAM"},
            )
            _add(check, "CheckValue").text = qnam
    used: dict[str, Codelist] = {}
    for dataset in datasets.values():
        _item_group(mdv, dataset, format)
    for dataset in datasets.values():
        for variable in dataset.spec.variables:
            _item_def(mdv, dataset, variable)
            if variable.codelist is not None:
                used[_codelist_oid(variable.codelist, dataset)] = _codelist_of(
                    variable.codelist, dataset, lists
                )
        for qnam in _qnams(dataset) if dataset.name.startswith("SUPP") else ():
            _qval_def(mdv, dataset, qnam)
    for oid, codelist in used.items():
        _codelist(mdv, oid, codelist)
    for dataset in datasets.values():
        for variable in dataset.spec.variables:
            if variable.origin == "Derived" and variable.comment:
                method = _add(
                    mdv,
                    "MethodDef",
                    OID=f"MT.{dataset.name}.{variable.name}",
                    Name=f"Algorithm for {dataset.name}.{variable.name}",
                    Type="Computation",
                )
                _text(method, variable.comment)
    for dataset in datasets.values():
        for variable in dataset.spec.variables:
            if variable.origin != "Derived" and variable.comment:
                _text(
                    _add(mdv, "CommentDef", ns=DEF, OID=f"COM.{dataset.name}.{variable.name}"),
                    variable.comment,
                )
        for qualifier in _qualifiers(dataset):
            oid = f"COM.{dataset.name}.QVAL.{qualifier.qnam}"
            _text(_add(mdv, "CommentDef", ns=DEF, OID=oid), qualifier.comment)
    return root


def _add(parent: etree._Element, tag: str, ns: str = ODM, **attributes: str) -> etree._Element:
    return etree.SubElement(parent, f"{{{ns}}}{tag}", attrib=attributes)


def _text(parent: etree._Element, text: str, tag: str = "Description") -> None:
    translated = _add(_add(parent, tag), "TranslatedText", **{XML_LANG: "en"})
    translated.text = text


def _item_group(mdv: etree._Element, dataset: Dataset, format: str) -> None:
    spec = dataset.spec
    leaf_id = f"LF.{spec.name}"
    group = _add(
        mdv,
        "ItemGroupDef",
        OID=f"IG.{spec.name}",
        Domain=spec.parent,
        Name=spec.name,
        Repeating="No" if spec.name == "DM" else "Yes",
        IsReferenceData="No",
        SASDatasetName=spec.name,
        Purpose="Tabulation",
        **{
            f"{{{DEF}}}Structure": spec.structure,
            f"{{{DEF}}}StandardOID": STANDARD,
            f"{{{DEF}}}ArchiveLocationID": leaf_id,
        },
    )
    _text(group, spec.label)
    for order, variable in enumerate(spec.variables, start=1):
        attributes = {
            "ItemOID": f"IT.{spec.name}.{variable.name}",
            "OrderNumber": str(order),
            "Mandatory": "Yes" if variable.core == "Req" else "No",
        }
        if variable.name in spec.keys:
            attributes["KeySequence"] = str(spec.keys.index(variable.name) + 1)
        if variable.origin == "Derived" and variable.comment:
            attributes["MethodOID"] = f"MT.{spec.name}.{variable.name}"
        _add(group, "ItemRef", **attributes)
    _add(group, "Class", ns=DEF, Name=spec.observation_class)
    file = f"{spec.name.lower()}.{'csv' if format == 'csv' else 'xpt'}"
    leaf = _add(group, "leaf", ns=DEF, ID=leaf_id, **{f"{{{XLINK}}}href": file})
    _add(leaf, "title", ns=DEF).text = file


def _data_type(dataset: Dataset, variable: Variable) -> dict[str, str]:
    """DataType, Length and SignificantDigits of a variable, from its values."""
    values = [row[variable.name] for row in dataset.rows if row.get(variable.name) is not None]
    if variable.type == "Num":
        texts = [format(Decimal(repr(float(v))).normalize(), "f") for v in values]
        if all("." not in t for t in texts):
            return {"DataType": "integer", "Length": str(max((len(t.lstrip("-")) for t in texts), default=1))}
        decimals = max(len(t.split(".")[1]) for t in texts if "." in t)
        digits = max(len(t.lstrip("-").replace(".", "")) for t in texts)
        return {"DataType": "float", "Length": str(digits), "SignificantDigits": str(decimals)}
    if variable.name.endswith("DTC") and values and all(len(str(v)) == 10 for v in values):
        return {"DataType": "date"}
    return {"DataType": "text", "Length": str(text_length(dataset, variable.name))}


def _item_def(mdv: etree._Element, dataset: Dataset, variable: Variable) -> None:
    attributes = {
        "OID": f"IT.{dataset.name}.{variable.name}",
        "Name": variable.name,
        **_data_type(dataset, variable),
        "SASFieldName": variable.name,
    }
    if variable.origin != "Derived" and variable.comment:
        attributes[f"{{{DEF}}}CommentOID"] = f"COM.{dataset.name}.{variable.name}"
    item = _add(mdv, "ItemDef", **attributes)
    _text(item, variable.label)
    if variable.codelist is not None:
        _add(item, "CodeListRef", CodeListOID=f"CL.{_codelist_oid(variable.codelist, dataset)}")
    _origin(item, variable.origin)
    if variable.name == "QVAL":
        _add(item, "ValueListRef", ns=DEF, ValueListOID=f"VL.{dataset.name}.QVAL")


def _origin(item: etree._Element, origin: str) -> None:
    source = SOURCES.get(origin)
    _add(item, "Origin", ns=DEF, Type=origin, **({"Source": source} if source else {}))


def _codelist_oid(name: str, dataset: Dataset) -> str:
    """Codelists are shared across datasets, except each SUPP--'s QNAM list."""
    return f"{name}.{dataset.spec.parent}" if name == "QNAM" else name


def _codelist_of(name: str, dataset: Dataset, lists: Mapping[str, Codelist]) -> Codelist:
    if name != "QNAM":
        return lists[name]
    labels = {row["QNAM"]: row["QLABEL"] for row in dataset.rows}
    return Codelist(f"Qualifier Names of {dataset.name}", tuple((q, labels[q]) for q in _qnams(dataset)))


def _codelist(mdv: etree._Element, oid: str, codelist: Codelist) -> None:
    node = _add(mdv, "CodeList", OID=f"CL.{oid}", Name=codelist.name, DataType=codelist.data_type)
    if codelist.dictionary is not None:
        name, _, release = codelist.dictionary.rpartition(" ")
        if not name or not release[:1].isdigit():
            name, release = codelist.dictionary, ""
        _add(node, "ExternalCodeList", Dictionary=name, **({"Version": release} if release else {}))
    elif any(decode for _, decode in codelist.terms):
        for coded, decode in codelist.terms:
            _text(_add(node, "CodeListItem", CodedValue=coded), decode or coded, tag="Decode")
    else:
        for coded, _ in codelist.terms:
            _add(node, "EnumeratedItem", CodedValue=coded)


def _qnams(dataset: Dataset) -> list[str]:
    """The QNAMs of a SUPP-- dataset in first-seen order."""
    return list(dict.fromkeys(row["QNAM"] for row in dataset.rows))


def _value_list(mdv: etree._Element, dataset: Dataset) -> None:
    values = _add(mdv, "ValueListDef", ns=DEF, OID=f"VL.{dataset.name}.QVAL")
    for order, qnam in enumerate(_qnams(dataset), start=1):
        ref = _add(
            values,
            "ItemRef",
            ItemOID=f"IT.{dataset.name}.QVAL.{qnam}",
            OrderNumber=str(order),
            Mandatory="Yes",
        )
        _add(ref, "WhereClauseRef", ns=DEF, WhereClauseOID=f"WC.{dataset.name}.QNAM.{qnam}")


def _qval_def(mdv: etree._Element, dataset: Dataset, qnam: str) -> None:
    """The value-level ItemDef of QVAL where QNAM is ``qnam``: its length, label and origin."""
    rows = [row for row in dataset.rows if row["QNAM"] == qnam]
    qualifier = next((q for q in _qualifiers(dataset) if q.qnam == qnam), None)
    attributes = {
        "OID": f"IT.{dataset.name}.QVAL.{qnam}",
        "Name": qnam,
        "DataType": "text",
        "Length": str(max(len(row["QVAL"]) for row in rows)),
        "SASFieldName": qnam,
    }
    if qualifier is not None:
        attributes[f"{{{DEF}}}CommentOID"] = f"COM.{dataset.name}.QVAL.{qnam}"
    item = _add(mdv, "ItemDef", **attributes)
    _text(item, rows[0]["QLABEL"])
    _origin(item, qualifier.origin if qualifier else rows[0]["QORIG"])


def _qualifiers(dataset: Dataset) -> list[Qualifier]:
    """The named qualifiers a SUPP-- dataset holds (not the pieces of long text)."""
    qnams = set(_qnams(dataset)) if dataset.name.startswith("SUPP") else set()
    return [q for q in QUALIFIERS.get(dataset.spec.parent, ()) if q.qnam in qnams]
