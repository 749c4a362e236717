"""One schema for the lake: the Ali-CCP fields with their tags, and every table built from them.

    lakerec.schema.fields   the field registry (codes, names, roles, towers) and the raw format's constants
    lakerec.schema.tables   the table registry (names, columns, types, partitioning, the job that writes each)

Code names a field or a table through these modules, never by a string literal (a test
scans the sources); the SQL files get their column lists from them (lakerec.sqlfiles).
"""
