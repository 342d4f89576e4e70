"""Exchange formats: CDISC ODM 1.3.2 and SDTM."""
