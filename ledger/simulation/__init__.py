"""A realistic simulated run of the trial, entered through the same import path as site data."""
