"""SAS XPORT version 5 transport files of SDTM datasets, within the FDA's limits (issue 15).

The FDA Technical Conformance Guide asks for one SAS XPORT v5 file per dataset:
dataset and variable names of at most 8 characters, labels of at most 40,
character values of at most 200 bytes, ASCII only.  :func:`ascii_text` makes a
ledger text fit (tab and newline become spaces, other control characters are
escaped as everywhere, accents are dropped, any other character is ``?``);
:func:`chunks` cuts a long one into 200-byte pieces (SDTMIG 4.5.3.2 puts the
pieces after the first in SUPP--).  The files are
written with pyreadstat; a character variable is as long as its longest value.
"""

from __future__ import annotations

import math
import unicodedata
from pathlib import Path

import pandas as pd
import pyreadstat

from ledger.domain.text import printable
from ledger.exchange.sdtmig import Dataset

MAX_NAME = 8
MAX_LABEL = 40
MAX_TEXT = 200


def ascii_text(value: str) -> str:
    """``value`` in ASCII: tab and newline as spaces, other controls escaped, no accents, else ``?``.

    Control characters a store of an older version may hold are escaped the way
    every output escapes them (:func:`ledger.domain.text.printable`).
    """
    escaped = printable(value).replace("\t", " ").replace("\n", " ")
    decomposed = unicodedata.normalize("NFKD", escaped)
    return "".join(c if c.isascii() else "?" for c in decomposed if not unicodedata.combining(c))


def chunks(value: str, size: int = MAX_TEXT) -> list[str]:
    """``value`` in pieces of at most ``size`` characters, the first one first."""
    return [value[start : start + size] for start in range(0, len(value), size)] or [""]


def frame(dataset: Dataset) -> pd.DataFrame:
    """The dataset as a data frame: text ``""`` for null, numbers as floats (NaN for null)."""
    columns = {}
    for variable in dataset.spec.variables:
        values = [row.get(variable.name) for row in dataset.rows]
        if variable.type == "Num":
            columns[variable.name] = pd.Series(
                [math.nan if v is None else float(v) for v in values], dtype="float64"
            )
        else:
            columns[variable.name] = pd.Series(["" if v is None else str(v) for v in values], dtype=object)
    return pd.DataFrame(columns, columns=dataset.spec.columns)


def write_xpt(dataset: Dataset, path: Path) -> None:
    """Write ``dataset`` as a SAS XPORT v5 file, its name and label and every variable's label."""
    pyreadstat.write_xport(
        frame(dataset),
        str(path),
        file_label=dataset.spec.label,
        column_labels=[v.label for v in dataset.spec.variables],
        table_name=dataset.name,
        file_format_version=5,
    )


def text_length(dataset: Dataset, name: str) -> int:
    """The length of a character variable: its longest value, at least 1 (what XPORT stores)."""
    return max((len(str(row[name])) for row in dataset.rows if row.get(name) is not None), default=1) or 1
