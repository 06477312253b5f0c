"""The store's tables: the contract that checks, notebooks and later issues rely on.

Geometry columns use the spatial extension's ``GEOMETRY`` type and hold
coordinates in the district CRS (metres, x = easting, y = northing).
Mesh vertices are float32 relative to the district origin kept in ``meta``.
Timestamps are naive and in the store's zone, ``meta.timezone`` (an IANA name,
``DEFAULT_TIMEZONE`` unless set): every API answer sends them with that zone's offset.
"""

from __future__ import annotations

SCHEMA_VERSION = 17  # 2 added elements (BIM parts), 3 api_keys, 4 detections and cases.media_url,
# 5 grid_changes (who changed which grid version, when and why), 6 users and the audit trail,
# 7 no R-tree on grid boundaries (see DROPPED_INDEXES), 8 users.lang (the UI language a user chose),
# cases.attributes (Open311 attributes) and meta.timezone; 9 the basemap (roads, water, green) and
# grids.worker_phone; 10 key_use (requests per API key and day); 11 buildings.residents (head counts
# where residents are counted, not listed); 12 the field loop's core: cases.assigned_worker, cases.department and
# cases.deadline, users.department, the departments, their duties list, residents' evaluations and the one-use
# tokens that ask for them; 13 the grid workers' field tables: case_photos, patrol_shifts, patrol_checkins,
# field_actions; 14 party_orgs.kind, parent_id and
# secretary, party_reports (party members reporting to a grid, 报到) and party_services (their service records);
# 15 the volunteer scheme (文明小杜, twin.volunteers): volunteer_tasks, volunteer_grabs, points_ledger, merchants,
# rewards, redemptions, resident_accounts, volunteer_reports (new tables only);
# 16 intake_keys (the idempotency keys of intake requests, with the answer a resend gets again);
# 17 camera_sight (how many cameras see each building, kept for the per-grid coverage: twin.cases.cameras;
# an older store gets it from add_missing_tables);
# older stores are upgraded in place

DEFAULT_TIMEZONE = "Asia/Shanghai"  # the demo district's; a new store, and an upgraded one, get it in meta.timezone
GRID_LEVELS = ("street", "community", "grid", "micro")
HEIGHT_SOURCES = ("height", "levels", "default", "bim", "mesh")
MESH_LODS = ("lod1", "bim", "mesh")
BASEMAP_KINDS = ("road", "water", "green")
# Party organisations, largest first: a committee (党委; a compound's 综合党委 too), a general branch (党总支), a
# branch (党支部), a joint branch of several small units (联合党支部) and a party group inside a branch (党小组).
PARTY_ORG_KINDS = ("committee", "general_branch", "branch", "joint_branch", "group")
# How an organisation's name ends for each kind, the longest first: an upgraded store's organisations get their
# kind from their names (the demo's are named so: 普罗新村党委, 如意家园党支部).
PARTY_KIND_SUFFIXES = (("联合党支部", "joint_branch"), ("党总支", "general_branch"), ("党支部", "branch"),
                       ("党小组", "group"), ("党委", "committee"), ("支部", "branch"))
# Who may take a volunteer task: anyone with a resident account, or party members only (residents tagged 党员).
TASK_ELIGIBILITY = ("anyone", "party")
# Why points were credited or spent (points_ledger.reason): a task confirmed done, a 小杜拍 report confirmed valid,
# a reward redeemed.
POINTS_REASONS = ("task", "report", "redeem")
# A grid worker's verdict on a resident's 小杜拍 report: valid earns points; the others earn none.
REPORT_VERDICTS = ("valid", "duplicate", "not_a_problem")
EVALUATION_RESULTS = ("satisfied", "not_satisfied", "default")  # a resident's answer, or none in time

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
        attributes VARCHAR,
        assigned_worker VARCHAR,  -- the user (role worker) who took the case on, or was given it
        department VARCHAR,       -- the departments row the case was dispatched to (the duties list, or by hand)
        -- the department's deadline, from the duties list when dispatched
        deadline TIMESTAMP""",
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
        lang VARCHAR,
        -- role department: the departments row it is bound to
        department VARCHAR""",
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
    "departments": """
        department_id VARCHAR PRIMARY KEY,  -- a short code (cgj), what users and cases name
        name VARCHAR NOT NULL,              -- as people call it (城市管理局)
        phone VARCHAR""",
    "duties": """
        kind VARCHAR PRIMARY KEY,           -- a taxonomy category, or a subcategory (which overrides its category)
        department_id VARCHAR NOT NULL,
        deadline_hours DOUBLE NOT NULL,     -- from dispatch to handled
        -- past the deadline by this many hours, the case goes on the street leader's list
        escalation_hours DOUBLE NOT NULL""",
    "evaluations": """
        case_id VARCHAR NOT NULL,
        "at" TIMESTAMP NOT NULL,
        result VARCHAR NOT NULL,            -- one of EVALUATION_RESULTS
        note VARCHAR,
        via VARCHAR NOT NULL,               -- token (the resident's page), sweep (by default), demo
        -- who handled it, as the case stood when evaluated: for the satisfaction per grid, worker and department
        grid_id VARCHAR,
        worker VARCHAR,
        department VARCHAR""",
    "evaluation_tokens": """
        token_hash VARCHAR PRIMARY KEY,     -- sha256 of the token; the token itself is shown once, in the receipt
        case_id VARCHAR NOT NULL,
        issued_at TIMESTAMP NOT NULL,
        expires_at TIMESTAMP,               -- 7 days after the question is asked (the case resolved); NULL before
        used_at TIMESTAMP""",
    # The grid workers' field loop (twin.field): photos of cases, patrol, and the phone's actions applied once.
    "case_photos": """
        photo_id VARCHAR PRIMARY KEY,
        case_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,           -- one of PHOTO_KINDS: before or after the work
        sha256 VARCHAR NOT NULL,         -- of the stored bytes (re-encoded, no metadata)
        original_sha256 VARCHAR NOT NULL,  -- of the bytes the phone sent
        media_type VARCHAR NOT NULL,     -- image/jpeg, image/png, image/webp
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        size INTEGER NOT NULL,           -- bytes stored
        image BLOB NOT NULL,
        taken_by VARCHAR NOT NULL,       -- the worker's user name
        "at" TIMESTAMP NOT NULL""",
    "patrol_shifts": """
        worker VARCHAR NOT NULL,         -- the worker's user name
        started_at TIMESTAMP NOT NULL,
        ended_at TIMESTAMP,              -- NULL: on patrol now
        PRIMARY KEY (worker, started_at)""",
    "patrol_checkins": """
        -- the phone's idempotency key: a check-in sent twice is kept once (looked up near its time: no index,
        -- which would cost memory for every position of 30 days; the time's zone maps find it)
        key VARCHAR NOT NULL,
        worker VARCHAR NOT NULL,
        x DOUBLE NOT NULL,               -- district CRS, metres
        y DOUBLE NOT NULL,
        accuracy_m DOUBLE,               -- as the phone reported it
        grid_id VARCHAR NOT NULL,        -- the micro-grid the position is in
        -- kept PATROL_KEEP_DAYS (twin.field.patrol), then deleted (and the deletion audited)
        "at" TIMESTAMP NOT NULL""",
    "field_actions": """
        key VARCHAR PRIMARY KEY,         -- the phone's idempotency key
        worker VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,           -- step, photo, patrol
        case_id VARCHAR,
        "at" TIMESTAMP NOT NULL,
        request VARCHAR NOT NULL,        -- JSON of what was asked (a key sent again with another request is refused)
        -- JSON of the answer, given again to a replay
        result VARCHAR NOT NULL""",
    "intake_keys": """
        client VARCHAR NOT NULL,         -- the API key's client that sent the request
        key VARCHAR NOT NULL,            -- its idempotency key (twin.cases.idempotency)
        route VARCHAR NOT NULL,          -- open311 or detection
        request VARCHAR NOT NULL,        -- digest of what was asked (a key sent again with another request is refused)
        case_id VARCHAR,
        "at" TIMESTAMP NOT NULL,
        answer VARCHAR NOT NULL,         -- JSON of the answer, given again to a resend
        PRIMARY KEY (client, key)""",
    # How many cameras see each building (twin.cases.cameras.cameras_per_building), for the buildings that one
    # camera sees at least; valid while meta.camera_sight_of is the fingerprint of the cameras and footprints.
    "camera_sight": """
        building_id VARCHAR NOT NULL,
        cameras INTEGER NOT NULL""",
    "party_orgs": """
        org_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        grid_id VARCHAR,
        compound_id VARCHAR,         -- a compound's organisation covers its buildings (twin.party.orgs)
        members INTEGER,
        kind VARCHAR,                -- one of PARTY_ORG_KINDS
        parent_id VARCHAR,           -- the organisation above it (a group's branch), if any
        secretary VARCHAR""",
    "party_reports": """
        resident_id VARCHAR PRIMARY KEY,  -- a resident tagged 党员
        grid_id VARCHAR NOT NULL,         -- the grid whose services the member joins (not where they live)
        reported_on DATE NOT NULL""",
    "party_services": """
        service_id VARCHAR PRIMARY KEY,
        resident_id VARCHAR NOT NULL,     -- the party member who served
        grid_id VARCHAR NOT NULL,         -- where
        day DATE NOT NULL,
        hours DOUBLE,
        service VARCHAR""",
    # The volunteer scheme (twin.volunteers): tasks residents grab, the points they earn and spend at merchants.
    "volunteer_tasks": """
        task_id VARCHAR PRIMARY KEY,
        title VARCHAR NOT NULL,
        place VARCHAR NOT NULL,           -- the place as people name it
        x DOUBLE NOT NULL,                -- the place, district CRS, metres: check-ins within CHECK_IN_RADIUS_M
        y DOUBLE NOT NULL,
        grid_id VARCHAR NOT NULL,         -- the micro-grid of the place (its worker confirms)
        starts_at TIMESTAMP NOT NULL,
        ends_at TIMESTAMP NOT NULL,
        places INTEGER NOT NULL,          -- how many residents may take it
        points INTEGER NOT NULL,          -- credited to each once the worker confirms
        eligibility VARCHAR NOT NULL,     -- one of TASK_ELIGIBILITY
        published_by VARCHAR NOT NULL,
        published_at TIMESTAMP NOT NULL""",
    "volunteer_grabs": """
        task_id VARCHAR NOT NULL,
        place_no INTEGER NOT NULL,        -- 1..places: two grabs of the last place collide on the key
        resident_id VARCHAR NOT NULL,
        username VARCHAR NOT NULL,
        grabbed_at TIMESTAMP NOT NULL,
        checked_in_at TIMESTAMP,
        checked_out_at TIMESTAMP,
        confirmed_at TIMESTAMP,           -- the worker confirmed the work: points credited
        confirmed_by VARCHAR,
        hours DOUBLE,                     -- checked out minus checked in, when confirmed
        PRIMARY KEY (task_id, place_no)""",
    "points_ledger": """
        seq BIGINT PRIMARY KEY,           -- one chain over every resident, as the audit trail's
        "at" TIMESTAMP NOT NULL,
        resident_id VARCHAR NOT NULL,
        amount INTEGER NOT NULL,          -- credit > 0, spend < 0; a balance is the sum, never stored
        reason VARCHAR NOT NULL,          -- one of POINTS_REASONS
        ref VARCHAR,                      -- the task, case or redemption
        actor VARCHAR NOT NULL,
        prev_hash VARCHAR NOT NULL,
        hash VARCHAR NOT NULL""",
    "merchants": """
        merchant_id VARCHAR PRIMARY KEY,
        name VARCHAR NOT NULL,
        address VARCHAR,
        grid_id VARCHAR,
        -- the merchant's user (role merchant)
        username VARCHAR""",
    "rewards": """
        reward_id VARCHAR PRIMARY KEY,
        merchant_id VARCHAR NOT NULL,
        title VARCHAR NOT NULL,
        points INTEGER NOT NULL,
        stock INTEGER NOT NULL,           -- offered in all; what is left is stock minus the redemptions
        active BOOLEAN NOT NULL DEFAULT true""",
    "redemptions": """
        code VARCHAR PRIMARY KEY,         -- what the resident shows the merchant
        reward_id VARCHAR NOT NULL,
        merchant_id VARCHAR NOT NULL,
        resident_id VARCHAR NOT NULL,
        points INTEGER NOT NULL,
        ledger_seq BIGINT NOT NULL,       -- the spend
        created_at TIMESTAMP NOT NULL,
        used_at TIMESTAMP,                -- the merchant took the code: it is spent
        used_by VARCHAR""",
    "resident_accounts": """
        username VARCHAR PRIMARY KEY,     -- the users row (role resident)
        resident_id VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL,
        created_by VARCHAR NOT NULL,
        code_hash VARCHAR,                -- sha256 of the one-time code the resident sets a password with
        code_expires_at TIMESTAMP,
        activated_at TIMESTAMP""",
    "volunteer_reports": """
        case_id VARCHAR PRIMARY KEY,      -- the case the photo report became (小杜拍)
        resident_id VARCHAR NOT NULL,
        username VARCHAR NOT NULL,
        reported_at TIMESTAMP NOT NULL,
        verdict VARCHAR,                  -- one of REPORT_VERDICTS once the grid worker looked
        reviewed_by VARCHAR,
        reviewed_at TIMESTAMP,
        points INTEGER""",
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
    "evaluations_case": "evaluations (case_id)",
    "evaluation_tokens_case": "evaluation_tokens (case_id)",
    "case_photos_case": "case_photos (case_id)",
    "volunteer_grabs_resident": "volunteer_grabs (resident_id)",
    "points_ledger_resident": "points_ledger (resident_id)",
    "redemptions_resident": "redemptions (resident_id)",
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
    ("party_orgs", "kind", "VARCHAR"),
    ("party_orgs", "parent_id", "VARCHAR"),
    ("party_orgs", "secretary", "VARCHAR"),
    ("cases", "assigned_worker", "VARCHAR"),
    ("cases", "department", "VARCHAR"),
    ("cases", "deadline", "TIMESTAMP"),
    ("users", "department", "VARCHAR"),
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
# user, a saved grid): a trigger there sends NOTIFY twin_changes with the table's name, whoever writes, after the
# writing transaction's sender (the setting ORIGIN_SETTING, which a serving process's writer sets; ``store`` when
# unset: the command line, psql). ``meta`` too: each process remembers it (twin.store.store.MetaCache).
NOTIFIED_TABLES = ("api_keys", "users", "grids", "meta")
CHANGES_CHANNEL = "twin_changes"
ORIGIN_SETTING = "twin.origin"
