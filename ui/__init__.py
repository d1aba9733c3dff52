"""Vigil's NiceGUI incident console (`vigil console`)."""
