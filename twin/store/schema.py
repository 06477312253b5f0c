"""The store's tables: the contract that checks, notebooks and later issues rely on.

Geometry columns use the spatial extension's ``GEOMETRY`` type and hold
coordinates in the district CRS (metres, x = easting, y = northing).
Mesh vertices are float32 relative to the district origin kept in ``meta``.
Timestamps are naive and in the store's zone, ``meta.timezone`` (an IANA name,
``DEFAULT_TIMEZONE`` unless set): every API answer sends them with that zone's offset.
"""

from __future__ import annotations

SCHEMA_VERSION = 12  # 2 added elements (BIM parts), 3 api_keys, 4 detections and cases.media_url,
# 5 grid_changes (who changed which grid version, when and why), 6 users and the audit trail,
# 7 no R-tree on grid boundaries (see DROPPED_INDEXES), 8 users.lang (the UI language a user chose),
# cases.attributes (Open311 attributes) and meta.timezone; 9 the basemap (roads, water, green) and
# grids.worker_phone; 10 key_use (requests per API key and day); 11 buildings.residents (head counts
# where residents are counted, not listed); 12 camera_sight (how many cameras see each building, kept for
# the per-grid coverage: twin.cases.cameras);
# older stores are upgraded in place

DEFAULT_TIMEZONE = "Asia/Shanghai"  # the demo district's; a new store, and an upgraded one, get it in meta.timezone
GRID_LEVELS = ("street", "community", "grid", "micro")
HEIGHT_SOURCES = ("height", "levels", "default", "bim", "mesh")
MESH_LODS = ("lod1", "bim", "mesh")
BASEMAP_KINDS = ("road", "water", "green")

TABLES: dict[str, str] = {
    "meta": """
        key VARCHAR PRIMARY KEY,
        value VARCHAR NOT NULL""",
    "buildings": """
        building_id VARCHAR PRIMARY KEY,
        source VARCHAR NOT NULL,
        source_id VARCHAR NOT NULL,
        name VARCHAR,
        address VARCHAR,
        use VARCHAR,
        footprint GEOMETRY NOT NULL,
        height DOUBLE NOT NULL,
        base_z DOUBLE NOT NULL,
        floors INTEGER,
        height_source VARCHAR NOT NULL,
        grid_id VARCHAR,
        compound_id VARCHAR,
        households INTEGER,
        residents INTEGER,  -- people living there, when meta.residents = 'counted' (else NULL: see residents)
        label_x DOUBLE NOT NULL,
        label_y DOUBLE NOT NULL""",
    "meshes": """
        mesh_id VARCHAR PRIMARY KEY,
        building_id VARCHAR NOT NULL,
        lod VARCHAR NOT NULL,
        vertices BLOB NOT NULL,
        triangles BLOB NOT NULL,
        element_ids BLOB,  -- uint32 per triangle: element_index in elements
        n_vertices INTEGER NOT NULL,
        n_triangles INTEGER NOT NULL,
        bbox_xmin DOUBLE, bbox_ymin DOUBLE, bbox_zmin DOUBLE,
        bbox_xmax DOUBLE, bbox_ymax DOUBLE, bbox_zmax DOUBLE""",
    "grids": """
        grid_id VARCHAR NOT NULL,
        parent_id VARCHAR,
        level VARCHAR NOT NULL,
        name VARCHAR NOT NULL,
        kind VARCHAR,
        worker VARCHAR,
        worker_phone VARCHAR,  -- personal data: shown masked to roles that may not see it
        boundary GEOMETRY NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        valid_from TIMESTAMP NOT NULL,
        valid_to TIMESTAMP,
        PRIMARY KEY (grid_id, version)""",
    "compounds": """
        compound_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        boundary GEOMETRY NOT NULL,
        grid_id VARCHAR""",
    "residents": """
        resident_id VARCHAR PRIMARY KEY,
        household_id VARCHAR NOT NULL,
        building_id VARCHAR NOT NULL,
        unit VARCHAR,
        room VARCHAR,
        name VARCHAR,
        gender VARCHAR,
        id_number VARCHAR,
        phone VARCHAR,
        birth_date DATE,
        tags VARCHAR[]""",
    "cases": """
        case_id VARCHAR PRIMARY KEY,
        category VARCHAR NOT NULL,
        subcategory VARCHAR NOT NULL,
        source VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        description VARCHAR,
        address VARCHAR,
        location GEOMETRY NOT NULL,
        building_id VARCHAR,
        grid_id VARCHAR,
        reported_grid_id VARCHAR,
        camera_id VARCHAR,
        reported_at TIMESTAMP NOT NULL,
        updated_at TIMESTAMP NOT NULL,
        due_at TIMESTAMP,
        media_url VARCHAR,
        -- JSON: the service's attributes as asked at intake (Open311)
        attributes VARCHAR""",
    "case_events": """
        case_id VARCHAR NOT NULL,
        "at" TIMESTAMP NOT NULL,
        from_status VARCHAR,
        to_status VARCHAR NOT NULL,
        actor VARCHAR NOT NULL,
        note VARCHAR""",
    "cameras": """
        camera_id VARCHAR PRIMARY KEY,
        name VARCHAR,
        position GEOMETRY NOT NULL,
        z DOUBLE,
        heading_deg DOUBLE,
        pitch_deg DOUBLE,
        fov_deg DOUBLE,
        range_m DOUBLE,
        stream_url VARCHAR,
        status VARCHAR,
        grid_id VARCHAR,
        building_id VARCHAR""",
    "elements": """
        element_id VARCHAR PRIMARY KEY,
        mesh_id VARCHAR NOT NULL,
        building_id VARCHAR NOT NULL,
        element_index INTEGER NOT NULL,
        global_id VARCHAR,
        ifc_class VARCHAR,
        name VARCHAR,
        storey VARCHAR,
        psets VARCHAR,
        hidden BOOLEAN NOT NULL DEFAULT false""",
    "api_keys": """
        name VARCHAR PRIMARY KEY,
        key_hash VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        revoked_at TIMESTAMP""",
    "key_use": """
        name VARCHAR NOT NULL,          -- the api_keys client
        day DATE NOT NULL,              -- in the store's zone
        requests BIGINT NOT NULL,
        last_used TIMESTAMP NOT NULL,
        PRIMARY KEY (name, day)""",
    "detections": """
        detection_id VARCHAR PRIMARY KEY,
        camera_id VARCHAR NOT NULL,
        category VARCHAR NOT NULL,
        confidence DOUBLE NOT NULL,
        detected_at TIMESTAMP NOT NULL,
        received_at TIMESTAMP NOT NULL,
        snapshot_url VARCHAR,
        bbox DOUBLE[],
        case_id VARCHAR NOT NULL""",
    "grid_changes": """
        change_id VARCHAR NOT NULL,     -- one saved edit, import or restore
        "at" TIMESTAMP NOT NULL,        -- = valid_from of the versions it wrote
        actor VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        action VARCHAR NOT NULL,        -- edit, restore, import
        grid_id VARCHAR NOT NULL,
        version INTEGER,                -- the version written; NULL when the grid was deleted
        change VARCHAR NOT NULL,        -- changed, added, deleted, reparented
        -- moved: JSON of what the change moved (buildings, households, ...)
        moved VARCHAR""",
    "users": """
        username VARCHAR PRIMARY KEY,
        password_hash VARCHAR NOT NULL,  -- scrypt, salted (twin.access.access)
        role VARCHAR NOT NULL,
        grids VARCHAR[] NOT NULL,        -- the grids the role is bound to
        disabled BOOLEAN NOT NULL DEFAULT false,
        created_at TIMESTAMP NOT NULL,
        -- the UI language the user chose (zh, en); NULL: the default
        lang VARCHAR""",
    "audit": """
        seq BIGINT PRIMARY KEY,
        "at" TIMESTAMP NOT NULL,
        actor VARCHAR NOT NULL,
        action VARCHAR NOT NULL,
        target VARCHAR,
        detail VARCHAR,
        source VARCHAR,
        prev_hash VARCHAR NOT NULL,
        hash VARCHAR NOT NULL""",
    "basemap": """
        feature_id VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL,        -- one of BASEMAP_KINDS
        name VARCHAR,
        source VARCHAR NOT NULL,      -- the file (or 'demo') it was ingested from
        source_id VARCHAR,
        -- polygons in the district CRS; roads as their carriageway
        geometry GEOMETRY NOT NULL""",
    # How many cameras see each building (twin.cases.cameras.cameras_per_building), for the buildings that one
    # camera sees at least; valid while meta.camera_sight_of is the fingerprint of the cameras and footprints.
    "camera_sight": """
        building_id VARCHAR NOT NULL,
        cameras INTEGER NOT NULL""",
    "party_orgs": """
        org_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        grid_id VARCHAR,
        compound_id VARCHAR,
        members INTEGER""",
}

# Lookups later issues need: building -> residents and cases, grid -> buildings,
# point -> grid (R-tree on the boundary), mesh by building.
INDEXES: dict[str, str] = {
    "residents_building": "residents (building_id)",
    "cases_building": "cases (building_id)",
    "cases_grid": "cases (grid_id)",
    "case_events_case": "case_events (case_id)",
    "buildings_grid": "buildings (grid_id)",
    "buildings_source": "buildings (source, source_id)",
    "meshes_building": "meshes (building_id)",
    "cameras_grid": "cameras (grid_id)",
    "grids_parent": "grids (parent_id)",
    "elements_mesh": "elements (mesh_id)",
    "detections_case": "detections (case_id)",
    "detections_camera": "detections (camera_id)",
    "grid_changes_grid": "grid_changes (grid_id)",
}

# Indexes older stores have and this version drops. DuckDB 1.5.5's spatial R-tree breaks on an UPDATE of
# its table: the store can then neither CHECKPOINT nor replay its log after a crash, and saving grids
# updates them. A few thousand grid polygons need no index.
DROPPED_INDEXES = ("grids_boundary",)

# Columns that later schema versions added to existing tables: (table, column, type). An older store's table
# that lacks one is made anew with all of TABLES' columns when the store is upgraded (twin.store.store).
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("cases", "media_url", "VARCHAR"),
    ("users", "lang", "VARCHAR"),
    ("cases", "attributes", "VARCHAR"),
    ("grids", "worker_phone", "VARCHAR"),
    ("buildings", "residents", "INTEGER"),
)

# (table, column) of every geometry column: a PostgreSQL store types them geometry(Geometry, SRID) in the store's
# CRS once it is known (twin.store.store.tag_geometry_srid).
GEOMETRY_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (table, line.split()[0]) for table, columns in TABLES.items() for line in columns.splitlines()
    if len(line.split()) > 1 and line.split()[1].rstrip(",") == "GEOMETRY")

# PostgreSQL sequences of a PostgreSQL store, each with the query (DuckDB's dialect) of the last number its table
# has used; a copy into PostgreSQL sets the sequence there (twin.store.store.advance_sequences). Case numbers come
# from one sequence for every process that writes (``C20261126-0042``: the day, then a number that never repeats).
SEQUENCES: dict[str, str] = {
    "case_numbers": "SELECT max(TRY_CAST(split_part(case_id, '-', 2) AS BIGINT)) FROM cases",
}

# Tables whose changes every process serving a PostgreSQL store must hear of at once (a revoked key, a disabled
# user, a saved grid): a trigger there sends NOTIFY twin_changes with the table's name, whoever writes.
NOTIFIED_TABLES = ("api_keys", "users", "grids")
CHANGES_CHANNEL = "twin_changes"
