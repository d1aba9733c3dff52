"""Retrieval evaluation: does the right runbook come back for real alerts?"""
