"""The emulated PostgreSQL catalog's contents (catalog.py): its relations, types and functions, and the
rows of the populated relations for a sandbox's tables.

The relations are PostgreSQL 15's, with the columns psql's ``\\d`` commands and drivers' metadata queries
read (not every column of each). The oids of the namespaces, types and access method are PostgreSQL's
own, so a client that knows them (``atttypid = 25``: text) reads them right; tables are numbered from
16384 in name order, per query.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from headwater.pgwire import types as pgtypes
from headwater.pgwire.types import type_oid

CATALOG_SCHEMA, INFORMATION_SCHEMA = "hw_pg", "hw_is"
PUBLIC, PG_CATALOG, INFO = 2200, 11, 13_000  # the namespaces' oids, as PostgreSQL numbers them
FIRST_TABLE_OID = 16_384
ROLE = 10  # the login's role: it owns everything here

# oid: (typname, format_type's name, information_schema's data_type, typlen, typcategory)
TYPES: dict[int, tuple[str, str, str, int, str]] = {
    pgtypes.BOOL: ("bool", "boolean", "boolean", 1, "B"),
    pgtypes.BYTEA: ("bytea", "bytea", "bytea", -1, "U"),
    18: ("char", '"char"', '"char"', 1, "Z"),
    19: ("name", "name", "name", 64, "S"),
    pgtypes.INT8: ("int8", "bigint", "bigint", 8, "N"),
    pgtypes.INT2: ("int2", "smallint", "smallint", 2, "N"),
    pgtypes.INT4: ("int4", "integer", "integer", 4, "N"),
    pgtypes.TEXT: ("text", "text", "text", -1, "S"),
    26: ("oid", "oid", "oid", 4, "N"),
    pgtypes.JSON: ("json", "json", "json", -1, "U"),
    pgtypes.FLOAT4: ("float4", "real", "real", 4, "N"),
    pgtypes.FLOAT8: ("float8", "double precision", "double precision", 8, "N"),
    1043: ("varchar", "character varying", "character varying", -1, "S"),
    pgtypes.DATE: ("date", "date", "date", 4, "D"),
    pgtypes.TIME: ("time", "time without time zone", "time without time zone", 8, "D"),
    pgtypes.TIMESTAMP: ("timestamp", "timestamp without time zone", "timestamp without time zone", 8, "D"),
    pgtypes.TIMESTAMPTZ: ("timestamptz", "timestamp with time zone", "timestamp with time zone", 8, "D"),
    pgtypes.INTERVAL: ("interval", "interval", "interval", 16, "T"),
    pgtypes.NUMERIC: ("numeric", "numeric", "numeric", -1, "N"),
    pgtypes.UUID: ("uuid", "uuid", "uuid", 16, "U"),
}

# The catalog's relations: the populated ones (filled by :func:`setup`) and the ones that stay empty.
RELATIONS = """
pg_namespace(oid BIGINT, nspname VARCHAR, nspowner BIGINT, nspacl VARCHAR[])
pg_class(oid BIGINT, relname VARCHAR, relnamespace BIGINT, reltype BIGINT, reloftype BIGINT,
  relowner BIGINT, relam BIGINT, relfilenode BIGINT, reltablespace BIGINT, relpages INTEGER,
  reltuples REAL, relallvisible INTEGER, reltoastrelid BIGINT, relhasindex BOOLEAN, relisshared BOOLEAN,
  relpersistence VARCHAR, relkind VARCHAR, relnatts SMALLINT, relchecks SMALLINT, relhasrules BOOLEAN,
  relhastriggers BOOLEAN, relhassubclass BOOLEAN, relrowsecurity BOOLEAN, relforcerowsecurity BOOLEAN,
  relispopulated BOOLEAN, relreplident VARCHAR, relispartition BOOLEAN, relrewrite BIGINT,
  relacl VARCHAR[], reloptions VARCHAR[], relpartbound VARCHAR)
pg_attribute(attrelid BIGINT, attname VARCHAR, atttypid BIGINT, attstattarget INTEGER, attlen SMALLINT,
  attnum SMALLINT, attndims INTEGER, atttypmod INTEGER, attbyval BOOLEAN, attalign VARCHAR,
  attstorage VARCHAR, attcompression VARCHAR, attnotnull BOOLEAN, atthasdef BOOLEAN,
  atthasmissing BOOLEAN, attidentity VARCHAR, attgenerated VARCHAR, attisdropped BOOLEAN,
  attislocal BOOLEAN, attinhcount INTEGER, attcollation BIGINT, attacl VARCHAR[], attoptions VARCHAR[],
  attfdwoptions VARCHAR[])
pg_type(oid BIGINT, typname VARCHAR, typnamespace BIGINT, typowner BIGINT, typlen SMALLINT,
  typbyval BOOLEAN, typtype VARCHAR, typcategory VARCHAR, typispreferred BOOLEAN, typisdefined BOOLEAN,
  typdelim VARCHAR, typrelid BIGINT, typelem BIGINT, typarray BIGINT, typnotnull BOOLEAN,
  typbasetype BIGINT, typtypmod INTEGER, typndims INTEGER, typcollation BIGINT, typdefault VARCHAR,
  typacl VARCHAR[], hw_format VARCHAR, hw_sql VARCHAR)
pg_database(oid BIGINT, datname VARCHAR, datdba BIGINT, encoding INTEGER, datlocprovider VARCHAR,
  datistemplate BOOLEAN, datallowconn BOOLEAN, datconnlimit INTEGER, dattablespace BIGINT,
  datcollate VARCHAR, datctype VARCHAR, daticulocale VARCHAR, datcollversion VARCHAR, datacl VARCHAR[])
pg_roles(oid BIGINT, rolname VARCHAR, rolsuper BOOLEAN, rolinherit BOOLEAN, rolcreaterole BOOLEAN,
  rolcreatedb BOOLEAN, rolcanlogin BOOLEAN, rolreplication BOOLEAN, rolconnlimit INTEGER,
  rolpassword VARCHAR, rolvaliduntil TIMESTAMPTZ, rolbypassrls BOOLEAN, rolconfig VARCHAR[])
pg_auth_members(roleid BIGINT, member BIGINT, grantor BIGINT, admin_option BOOLEAN)
pg_am(oid BIGINT, amname VARCHAR, amhandler VARCHAR, amtype VARCHAR)
pg_tables(schemaname VARCHAR, tablename VARCHAR, tableowner VARCHAR, tablespace VARCHAR,
  hasindexes BOOLEAN, hasrules BOOLEAN, hastriggers BOOLEAN, rowsecurity BOOLEAN)
pg_views(schemaname VARCHAR, viewname VARCHAR, viewowner VARCHAR, definition VARCHAR)
pg_matviews(schemaname VARCHAR, matviewname VARCHAR, matviewowner VARCHAR, tablespace VARCHAR,
  hasindexes BOOLEAN, ispopulated BOOLEAN, definition VARCHAR)
pg_proc(oid BIGINT, proname VARCHAR, pronamespace BIGINT, proowner BIGINT, prolang BIGINT,
  prokind VARCHAR, prosecdef BOOLEAN, proretset BOOLEAN, provolatile VARCHAR, pronargs SMALLINT,
  prorettype BIGINT, proargtypes VARCHAR, prosrc VARCHAR, proacl VARCHAR[])
pg_index(indexrelid BIGINT, indrelid BIGINT, indnatts SMALLINT, indnkeyatts SMALLINT,
  indisunique BOOLEAN, indnullsnotdistinct BOOLEAN, indisprimary BOOLEAN, indisexclusion BOOLEAN,
  indimmediate BOOLEAN, indisclustered BOOLEAN, indisvalid BOOLEAN, indcheckxmin BOOLEAN,
  indisready BOOLEAN, indislive BOOLEAN, indisreplident BOOLEAN, indkey SMALLINT[],
  indcollation BIGINT[], indclass BIGINT[], indoption SMALLINT[], indexprs VARCHAR, indpred VARCHAR)
pg_opclass(oid BIGINT, opcmethod BIGINT, opcname VARCHAR, opcnamespace BIGINT, opcowner BIGINT,
  opcfamily BIGINT, opcintype BIGINT, opcdefault BOOLEAN, opckeytype BIGINT)
pg_attrdef(oid BIGINT, adrelid BIGINT, adnum SMALLINT, adbin VARCHAR)
pg_collation(oid BIGINT, collname VARCHAR, collnamespace BIGINT, collowner BIGINT,
  collprovider VARCHAR, collisdeterministic BOOLEAN, collencoding INTEGER, collcollate VARCHAR,
  collctype VARCHAR)
pg_description(objoid BIGINT, classoid BIGINT, objsubid INTEGER, description VARCHAR)
pg_inherits(inhrelid BIGINT, inhparent BIGINT, inhseqno INTEGER, inhdetachpending BOOLEAN)
pg_constraint(oid BIGINT, conname VARCHAR, connamespace BIGINT, contype VARCHAR, condeferrable BOOLEAN,
  condeferred BOOLEAN, convalidated BOOLEAN, conrelid BIGINT, contypid BIGINT, conindid BIGINT,
  conparentid BIGINT, confrelid BIGINT, conislocal BOOLEAN, coninhcount INTEGER, connoinherit BOOLEAN,
  conkey SMALLINT[], confkey SMALLINT[], conbin VARCHAR)
pg_policy(oid BIGINT, polname VARCHAR, polrelid BIGINT, polcmd VARCHAR, polpermissive BOOLEAN,
  polroles BIGINT[], polqual VARCHAR, polwithcheck VARCHAR)
pg_statistic_ext(oid BIGINT, stxrelid BIGINT, stxname VARCHAR, stxnamespace BIGINT, stxowner BIGINT,
  stxstattarget INTEGER, stxkeys VARCHAR, stxkind VARCHAR[])
pg_publication(oid BIGINT, pubname VARCHAR, pubowner BIGINT, puballtables BOOLEAN, pubinsert BOOLEAN,
  pubupdate BOOLEAN, pubdelete BOOLEAN, pubtruncate BOOLEAN, pubviaroot BOOLEAN)
pg_publication_namespace(oid BIGINT, pnpubid BIGINT, pnnspid BIGINT)
pg_publication_rel(oid BIGINT, prpubid BIGINT, prrelid BIGINT, prqual VARCHAR, prattrs SMALLINT[])
pg_trigger(oid BIGINT, tgrelid BIGINT, tgparentid BIGINT, tgname VARCHAR, tgfoid BIGINT,
  tgtype SMALLINT, tgenabled VARCHAR, tgisinternal BOOLEAN)
pg_rewrite(oid BIGINT, rulename VARCHAR, ev_class BIGINT, ev_type VARCHAR, ev_enabled VARCHAR,
  is_instead BOOLEAN)
pg_extension(oid BIGINT, extname VARCHAR, extowner BIGINT, extnamespace BIGINT, extrelocatable BOOLEAN,
  extversion VARCHAR)
pg_foreign_table(ftrelid BIGINT, ftserver BIGINT, ftoptions VARCHAR[])
pg_tablespace(oid BIGINT, spcname VARCHAR, spcowner BIGINT, spcacl VARCHAR[], spcoptions VARCHAR[])
pg_settings(name VARCHAR, setting VARCHAR, unit VARCHAR, category VARCHAR, short_desc VARCHAR,
  context VARCHAR, vartype VARCHAR, source VARCHAR)
pg_enum(oid BIGINT, enumtypid BIGINT, enumsortorder REAL, enumlabel VARCHAR)
pg_range(rngtypid BIGINT, rngsubtype BIGINT)
pg_event_trigger(oid BIGINT, evtname VARCHAR, evtevent VARCHAR, evtowner BIGINT, evtfoid BIGINT,
  evtenabled VARCHAR, evttags VARCHAR[])
pg_sequence(seqrelid BIGINT, seqtypid BIGINT, seqstart BIGINT, seqincrement BIGINT, seqmax BIGINT,
  seqmin BIGINT, seqcache BIGINT, seqcycle BOOLEAN)
"""
INFORMATION = """
schemata(catalog_name VARCHAR, schema_name VARCHAR, schema_owner VARCHAR,
  default_character_set_catalog VARCHAR, default_character_set_schema VARCHAR,
  default_character_set_name VARCHAR, sql_path VARCHAR)
tables(table_catalog VARCHAR, table_schema VARCHAR, table_name VARCHAR, table_type VARCHAR,
  self_referencing_column_name VARCHAR, reference_generation VARCHAR, user_defined_type_catalog VARCHAR,
  user_defined_type_schema VARCHAR, user_defined_type_name VARCHAR, is_insertable_into VARCHAR,
  is_typed VARCHAR, commit_action VARCHAR)
columns(table_catalog VARCHAR, table_schema VARCHAR, table_name VARCHAR, column_name VARCHAR,
  ordinal_position INTEGER, column_default VARCHAR, is_nullable VARCHAR, data_type VARCHAR,
  character_maximum_length INTEGER, character_octet_length INTEGER, numeric_precision INTEGER,
  numeric_precision_radix INTEGER, numeric_scale INTEGER, datetime_precision INTEGER,
  interval_type VARCHAR, udt_catalog VARCHAR, udt_schema VARCHAR, udt_name VARCHAR,
  is_identity VARCHAR, is_generated VARCHAR, is_updatable VARCHAR)
views(table_catalog VARCHAR, table_schema VARCHAR, table_name VARCHAR, view_definition VARCHAR,
  check_option VARCHAR, is_updatable VARCHAR, is_insertable_into VARCHAR)
table_constraints(constraint_catalog VARCHAR, constraint_schema VARCHAR, constraint_name VARCHAR,
  table_catalog VARCHAR, table_schema VARCHAR, table_name VARCHAR, constraint_type VARCHAR,
  is_deferrable VARCHAR, initially_deferred VARCHAR, enforced VARCHAR)
key_column_usage(constraint_catalog VARCHAR, constraint_schema VARCHAR, constraint_name VARCHAR,
  table_catalog VARCHAR, table_schema VARCHAR, table_name VARCHAR, column_name VARCHAR,
  ordinal_position INTEGER, position_in_unique_constraint INTEGER)
routines(specific_catalog VARCHAR, specific_schema VARCHAR, specific_name VARCHAR,
  routine_catalog VARCHAR, routine_schema VARCHAR, routine_name VARCHAR, routine_type VARCHAR,
  data_type VARCHAR)
"""

_SETTINGS = {  # what current_setting() answers in a catalog query; other names are NULL
    "default_table_access_method": "heap",
    "server_version": "15.0",
    "server_version_num": "150000",
    "server_encoding": "UTF8",
    "client_encoding": "UTF8",
    "search_path": "public",
    "standard_conforming_strings": "on",
    "integer_datetimes": "on",
    "max_identifier_length": "63",
    "TimeZone": "UTC",
    "DateStyle": "ISO, MDY",
    "transaction_read_only": "on",
}
_SETTING = (
    "CASE lower(n) "
    + " ".join(f"WHEN '{k.lower()}' THEN '{v}'" for k, v in _SETTINGS.items())
    + " ELSE NULL::VARCHAR END"
)

# Catalog functions: name -> the macro's parameter lists and bodies ({user} and {database} filled in).
MACROS: dict[str, str] = {
    "pg_get_userbyid": "(role) AS {user}",
    "pg_table_is_visible": "(o) AS true",
    "pg_type_is_visible": "(o) AS true",
    "pg_function_is_visible": "(o) AS true",
    "format_type": f"(t, m) AS (SELECT hw_format FROM {CATALOG_SCHEMA}.pg_type WHERE oid = t)",
    "obj_description": "(o) AS NULL::VARCHAR, (o, c) AS NULL::VARCHAR",
    "col_description": "(o, n) AS NULL::VARCHAR",
    "shobj_description": "(o, c) AS NULL::VARCHAR",
    "pg_get_expr": "(e, r) AS NULL::VARCHAR, (e, r, p) AS NULL::VARCHAR",
    "pg_get_indexdef": "(o) AS NULL::VARCHAR, (o, c, p) AS NULL::VARCHAR",
    "pg_get_constraintdef": "(o) AS NULL::VARCHAR, (o, p) AS NULL::VARCHAR",
    "pg_get_viewdef": "(o) AS NULL::VARCHAR, (o, p) AS NULL::VARCHAR",
    "pg_get_triggerdef": "(o) AS NULL::VARCHAR, (o, p) AS NULL::VARCHAR",
    "pg_get_function_result": "(o) AS NULL::VARCHAR",
    "pg_get_function_arguments": "(o) AS NULL::VARCHAR",
    "pg_get_function_identity_arguments": "(o) AS NULL::VARCHAR",
    "pg_get_statisticsobjdef_columns": "(o) AS NULL::VARCHAR",
    "pg_relation_is_publishable": "(o) AS false",
    "pg_encoding_to_char": "(e) AS 'UTF8'",
    "pg_char_to_encoding": "(e) AS 6",
    "pg_relation_size": "(o) AS NULL::BIGINT, (o, f) AS NULL::BIGINT",
    "pg_table_size": "(o) AS NULL::BIGINT",
    "pg_total_relation_size": "(o) AS NULL::BIGINT",
    "pg_indexes_size": "(o) AS NULL::BIGINT",
    "pg_database_size": "(d) AS NULL::BIGINT",
    "pg_has_role": "(r, p) AS false, (u, r, p) AS false",
    "pg_tablespace_location": "(o) AS ''",
    "pg_size_pretty": "(n) AS CASE WHEN n IS NULL THEN NULL ELSE CAST(n AS VARCHAR) || ' bytes' END",
    "array_upper": "(a, d) AS len(a)",
    "array_lower": "(a, d) AS CASE WHEN len(a) > 0 THEN 1 END",
    "has_table_privilege": "(t, p) AS true, (u, t, p) AS true",
    "has_schema_privilege": "(s, p) AS true, (u, s, p) AS true",
    "has_database_privilege": "(d, p) AS true, (u, d, p) AS true",
    "current_database": "() AS {database}",
    "current_schema": "() AS 'public'",
    "current_schemas": "(implicit) AS ['pg_catalog', 'public']",
    "pg_backend_pid": "() AS 0",
    "pg_is_in_recovery": "() AS false",
    "pg_postmaster_start_time": "() AS TIMESTAMPTZ '2026-01-01 00:00:00+00'",
    "version": "() AS {version}",
    "pg_get_serial_sequence": "(t, c) AS NULL::VARCHAR",
    "pg_collation_is_visible": "(o) AS true",
    "pg_opclass_is_visible": "(o) AS true",
    "current_setting": f"(n) AS {_SETTING}, (n, missing_ok) AS {_SETTING}",
    "to_regtype": f"(n) AS (SELECT oid FROM {CATALOG_SCHEMA}.pg_type WHERE typname = n)",
    "to_regclass": f"(n) AS (SELECT oid FROM {CATALOG_SCHEMA}.pg_class WHERE relname = n)",
    "to_regnamespace": f"(n) AS (SELECT oid FROM {CATALOG_SCHEMA}.pg_namespace WHERE nspname = n)",
}
# The relations a function's macro reads: made whenever the function is.
MACRO_READS = {
    "format_type": "pg_type",
    "to_regtype": "pg_type",
    "to_regclass": "pg_class",
    "to_regnamespace": "pg_namespace",
}


def rows(
    tables: Sequence[tuple[str, pa.Schema | None]], user: str, database: str
) -> dict[str, list[dict[str, object]]]:
    """The populated relations' rows (``schema.relation`` -> rows); a column left out is NULL."""
    pg, info = CATALOG_SCHEMA, INFORMATION_SCHEMA
    namespaces = ((PG_CATALOG, "pg_catalog"), (PUBLIC, "public"), (INFO, "information_schema"))
    out: dict[str, list[dict[str, object]]] = {
        f"{pg}.pg_namespace": [dict(oid=oid, nspname=name, nspowner=ROLE) for oid, name in namespaces],
        f"{pg}.pg_database": [_database(database)],
        f"{pg}.pg_roles": [_role(user)],
        f"{pg}.pg_tablespace": [
            dict(oid=1663, spcname="pg_default", spcowner=ROLE),
            dict(oid=1664, spcname="pg_global", spcowner=ROLE),
        ],
        f"{pg}.pg_am": [dict(oid=2, amname="heap", amhandler="heap_tableam_handler", amtype="t")],
        f"{pg}.pg_type": [_type(oid, *described) for oid, described in TYPES.items()],
        f"{info}.schemata": [
            dict(catalog_name=database, schema_name=name, schema_owner=user) for _, name in namespaces
        ],
    }
    for key in ("pg_class", "pg_attribute", "pg_tables"):
        out[f"{pg}.{key}"] = []
    for key in ("tables", "columns"):
        out[f"{info}.{key}"] = []
    for number, (name, schema) in enumerate(sorted(tables, key=lambda t: t[0].lower())):
        oid = FIRST_TABLE_OID + number
        fields = list(schema) if schema is not None else []
        out[f"{pg}.pg_class"].append(_class(oid, name, len(fields)))
        out[f"{pg}.pg_tables"].append(
            dict(schemaname="public", tablename=name, tableowner=user, hasindexes=False, hasrules=False,
                 hastriggers=False, rowsecurity=False)
        )  # fmt: skip
        out[f"{info}.tables"].append(
            dict(table_catalog=database, table_schema="public", table_name=name, table_type="BASE TABLE",
                 is_insertable_into="NO", is_typed="NO")
        )  # fmt: skip
        for position, item in enumerate(fields, start=1):
            out[f"{pg}.pg_attribute"].append(_attribute(oid, position, item))
            out[f"{info}.columns"].append(_column(database, name, position, item))
    return out


def _database(name: str) -> dict[str, object]:
    return dict(
        oid=16_383, datname=name, datdba=ROLE, encoding=6, datlocprovider="c", datistemplate=False,
        datallowconn=True, datconnlimit=-1, dattablespace=1663, datcollate="C.UTF-8", datctype="C.UTF-8",
    )  # fmt: skip


def _role(user: str) -> dict[str, object]:
    return dict(
        oid=ROLE, rolname=user, rolsuper=False, rolinherit=True, rolcanlogin=True, rolcreaterole=False,
        rolcreatedb=False, rolreplication=False, rolconnlimit=-1, rolbypassrls=False,
    )  # fmt: skip


def _type(oid: int, name: str, shown: str, sql_name: str, size: int, category: str) -> dict[str, object]:
    return dict(
        oid=oid, typname=name, typnamespace=PG_CATALOG, typowner=ROLE, typlen=size, typbyval=0 < size <= 8,
        typtype="b", typcategory=category, typispreferred=False, typisdefined=True, typdelim=",",
        typrelid=0, typelem=0, typarray=0, typnotnull=False, typbasetype=0, typtypmod=-1, typndims=0,
        typcollation=100 if category == "S" else 0, hw_format=shown, hw_sql=sql_name,
    )  # fmt: skip


def _class(oid: int, name: str, columns: int) -> dict[str, object]:
    return dict(
        oid=oid, relname=name, relnamespace=PUBLIC, reltype=0, reloftype=0, relowner=ROLE, relam=2,
        relfilenode=oid, reltablespace=0, relpages=0, reltuples=-1.0, relallvisible=0, reltoastrelid=0,
        relhasindex=False, relisshared=False, relpersistence="p", relkind="r", relnatts=columns,
        relchecks=0, relhasrules=False, relhastriggers=False, relhassubclass=False, relrowsecurity=False,
        relforcerowsecurity=False, relispopulated=True, relreplident="n", relispartition=False,
        relrewrite=0,
    )  # fmt: skip


def _attribute(table: int, position: int, item: pa.Field) -> dict[str, object]:
    oid = type_oid(item.type)
    size = TYPES[oid][3]
    return dict(
        attrelid=table, attname=item.name, atttypid=oid, attstattarget=-1, attlen=size, attnum=position,
        attndims=0, atttypmod=-1, attbyval=0 < size <= 8, attalign="d",
        attstorage="p" if size > 0 else "x", attcompression="", attnotnull=not item.nullable,
        atthasdef=False, atthasmissing=False, attidentity="", attgenerated="", attisdropped=False,
        attislocal=True, attinhcount=0, attcollation=100 if TYPES[oid][4] == "S" else 0,
    )  # fmt: skip


def _column(database: str, table: str, position: int, item: pa.Field) -> dict[str, object]:
    typname, _, sql_name, _, _ = TYPES[type_oid(item.type)]
    return dict(
        table_catalog=database, table_schema="public", table_name=table, column_name=item.name,
        ordinal_position=position, is_nullable="YES" if item.nullable else "NO", data_type=sql_name,
        udt_catalog=database, udt_schema="pg_catalog", udt_name=typname, is_identity="NO",
        is_generated="NEVER", is_updatable="NO",
    )  # fmt: skip
