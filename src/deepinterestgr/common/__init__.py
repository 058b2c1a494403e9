"""Shared formats and plumbing every stage uses: params, files, errors, seeding, stage guard."""
