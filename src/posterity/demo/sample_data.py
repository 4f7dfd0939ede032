"""The Posters.science sample database.

``load_sample`` creates a small but realistic schema (serials, bigserials, a jsonb
GIN index, arrays, bytea, a view, a function, an extra sequence and a second
schema) and fills it with deterministic data.  ``fingerprint`` (in ``fingerprints.py``,
re-exported here because tests import it from this module) summarises the contents of
any database exactly, so a restored copy can be compared with the original.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .fingerprints import fingerprint, table_row_counts

__all__ = ["SCHEMA_SQL", "fingerprint", "load_sample", "table_row_counts"]

SCHEMA_SQL = """
CREATE TABLE institutions (
    id   serial PRIMARY KEY,
    name text NOT NULL UNIQUE
);

CREATE TABLE authors (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL,
    orcid          text,
    institution_id integer REFERENCES institutions (id)
);

CREATE TABLE posters (
    id           bigserial PRIMARY KEY,
    title        text NOT NULL,
    abstract     text,
    authors      text[],
    metadata     jsonb,
    conference   text,
    published_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    thumbnail    bytea,
    doi          text UNIQUE
);

CREATE TABLE poster_authors (
    poster_id bigint NOT NULL REFERENCES posters (id) ON DELETE CASCADE,
    author_id bigint NOT NULL REFERENCES authors (id),
    position  integer NOT NULL CHECK (position > 0),
    PRIMARY KEY (poster_id, author_id)
);

CREATE INDEX posters_published_at_idx ON posters (published_at);
CREATE INDEX posters_metadata_gin ON posters USING gin (metadata jsonb_path_ops);
CREATE INDEX poster_authors_author_idx ON poster_authors (author_id);

CREATE SEQUENCE poster_number_seq START WITH 100000;

CREATE VIEW recent_posters AS
    SELECT id, title, conference, published_at
    FROM posters
    WHERE published_at IS NOT NULL
    ORDER BY published_at DESC
    LIMIT 100;

CREATE FUNCTION poster_count(conf text) RETURNS bigint
    LANGUAGE sql STABLE
    AS $$ SELECT count(*) FROM posters WHERE conference = conf $$;

COMMENT ON TABLE posters IS 'Scientific posters published on Posters.science';
COMMENT ON COLUMN posters.thumbnail IS 'Small PNG-ish preview image';

CREATE SCHEMA audit;

CREATE TABLE audit.load_log (
    id        serial PRIMARY KEY,
    loaded_at timestamptz NOT NULL,
    posters   integer NOT NULL,
    seed      integer NOT NULL,
    note      text
);
"""

_INSTITUTIONS = [
    "ETH Zürich",
    "Université de Montréal",
    "東京大学 (University of Tokyo)",
    "Universidade de São Paulo",
    "Karolinska Institutet",
    "Max-Planck-Institut für Biochemie",
    "University of Cape Town",
    "Indian Institute of Science",
    "Københavns Universitet",
    "Uniwersytet Jagielloński",
    "Université Paris Cité",
    "Universitat de Barcelona",
    "Seoul National University",
    "Trinity College Dublin",
    "Technion – Israel Institute of Technology",
    "University of Oxford",
    "Massachusetts Institute of Technology",
    "Universidad Nacional Autónoma de México",
    "Háskóli Íslands",
    "National University of Singapore",
    "Københavns Biocenter",
    "Charité – Universitätsmedizin Berlin",
    "Sorbonne Université",
    "University of Lagos",
    "Đại học Quốc gia Hà Nội",
    "Stanford University",
    "Université Cheikh Anta Diop",
    "Australian National University",
    "Universidad de Chile",
    "Weizmann Institute of Science",
]

_FIRST = [
    "Ana", "Björn", "Chloé", "Dmitri", "Eun-ji", "Fatima", "Giulia", "Hiroshi",
    "Inès", "José", "Kwame", "Léa", "Mei", "Nikolaj", "Olúwásẹ́gun", "Priya",
    "Quentin", "Rūta", "Søren", "Thảo", "Uriel", "Valentina", "Wojciech", "Xin",
    "Yara", "Zoë", "Seán", "Aoife", "Ngozi", "Łukasz", "Ilse", "Mateus",
]  # fmt: skip

_LAST = [
    "Álvarez", "O'Brien", "Müller", "Nakamura", "Okafor", "Kowalski", "Dubois",
    "Smith", "Ivanova", "Chen", "García-Márquez", "van der Berg", "Ng", "Rossi",
    "Þórsdóttir", "Øster", "Al-Sayed", "Kim", "Patel", "Novák", "Nguyễn",
    'Jones "Jr"', "Smith, J.", "Mbeki", "Lindqvist", "Papadopoulos", "Zhang",
]  # fmt: skip

_TOPICS = [
    "α-synuclein aggregation", "CRISPR–Cas9 off-target effects", "β-lactamase inhibitors",
    "graph neural networks", "coral reef bleaching", "Schrödinger bridge sampling",
    "mRNA vaccine stability", "naïve Bayes baselines", "permafrost carbon flux",
    "quantum error correction", "microbiome diversity", "tau protein imaging",
    "large language models", "urban heat islands", "single-cell RNA-seq",
    "exoplanet atmospheres", "antimicrobial peptides", "soil nitrogen cycling",
    "photovoltaic perovskites", "sleep spindle dynamics", "Bayesian phylogenetics",
    "日本の森林生態系", "température des océans", "Ökosystemdienstleistungen",
    "🧬 protein folding", "Δ-opioid receptors", "honey-bee navigation",
]  # fmt: skip

_METHODS = [
    "A longitudinal study of", "Revisiting", "Towards scalable", "Measuring",
    "Deep learning for", "A meta-analysis of", "Low-cost sensors for",
    "On the reproducibility of", "Causal inference in", "Rapid assessment of",
]  # fmt: skip

_CONTEXTS = [
    "in sub-Saharan Africa", "across 12 European cohorts", "under climate stress",
    "in paediatric patients", "at the nanoscale", "with ≥ 95 % accuracy",
    "in low-resource settings", "using open data", "from 1990 to 2020",
    "in the Arctic", "for citizen science", "in vitro and in vivo",
]  # fmt: skip

_SENTENCES = [
    "We collected samples from {n} sites over {y} years.",
    "Results indicate a significant effect (p < 0.{p}, n = {n}).",
    "Our method improves on the state of the art by {pct}% ± {err}%.",
    "Data and code are available under CC-BY 4.0 at https://posters.science/d/{n}.",
    "The effect size was small but robust to sensitivity analyses.",
    "Contrary to prior work, we observed no association with age or sex.",
    "Limitations include a modest sample and self-reported outcomes.",
    'Participants described the intervention as "surprisingly effective".',
    "Measurements were taken at 4 °C, 25 °C and 37 °C in triplicate.",
    "Raw files were stored under C:\\data\\run_{n} before being uploaded.",
    "Ethics approval was obtained (ref. {y}/{n}).",
    "Further work will extend the model to multi-modal inputs.",
    "Les résultats confirment l'hypothèse initiale.",
    "Die Ergebnisse sind mit früheren Studien konsistent.",
    "結果は先行研究と一致した。",
    "Columns were separated by tabs:\tid\tvalue\tunit.",
]

_CONFERENCES = [
    "ISMB 2023", "NeurIPS 2022", "EGU General Assembly 2024", "ASCO Annual Meeting",
    "SfN Neuroscience 2023", "AGU Fall Meeting", "ICML 2024", "FEBS Congress",
    "Journées Francophones 2021", "Jahrestagung der DGfS", "APS March Meeting",
]  # fmt: skip

_KEYWORDS = [
    "open-science", "reproducibility", "genomics", "climate", "machine-learning",
    "neuroscience", "ecology", "oncology", "physics", "épidémiologie", "データ",
]  # fmt: skip

_FUNDERS = ["ERC", "NIH", "NSF", "DFG", "Wellcome Trust", "JSPS", "FAPESP", "ANR"]

_EPOCH = datetime(2014, 1, 1, tzinfo=UTC)


def _maybe(rng: random.Random, probability_null: float, value: Any) -> Any:
    return None if rng.random() < probability_null else value


def _orcid(rng: random.Random) -> str:
    digits = "".join(str(rng.randrange(10)) for _ in range(15))
    check = rng.choice("0123456789X")
    full = digits + check
    return "-".join(full[i : i + 4] for i in range(0, 16, 4))


def _abstract(rng: random.Random) -> str:
    parts: list[str] = []
    # A few very long abstracts (tens of KB) so that TOAST storage is exercised.
    count = rng.randint(300, 700) if rng.random() < 0.03 else rng.randint(4, 28)
    for _ in range(count):
        sentence = rng.choice(_SENTENCES).format(
            n=rng.randint(3, 5000),
            y=rng.randint(1, 30),
            p=rng.choice(["05", "01", "001"]),
            pct=rng.randint(1, 60),
            err=rng.randint(1, 9),
        )
        parts.append(sentence)
        if rng.random() < 0.12:
            parts.append("\n\n")
    return " ".join(parts).replace(" \n\n ", "\n\n").strip()


def _metadata(rng: random.Random, poster_id: int) -> dict[str, Any] | None:
    roll = rng.random()
    if roll < 0.05:
        return None
    if roll < 0.08:
        return {}
    meta: dict[str, Any] = {
        "keywords": rng.sample(_KEYWORDS, rng.randint(1, 4)),
        "session": {
            "room": f"Hall {rng.choice('ABCDE')}{rng.randint(1, 12)}",
            "slot": rng.randint(1, 40),
            "board": f"P-{poster_id:05d}",
        },
        "open_access": rng.random() < 0.7,
        "score": round(rng.uniform(1, 5), 2),
        "views": rng.randint(0, 100_000),
        "license": rng.choice(["CC-BY-4.0", "CC0-1.0", None]),
    }
    if rng.random() < 0.6:
        meta["funding"] = [
            {"agency": rng.choice(_FUNDERS), "grant": f"{rng.randint(100000, 999999)}"}
            for _ in range(rng.randint(1, 3))
        ]
    if rng.random() < 0.2:
        meta["notes"] = {"reviewer": {"comments": ["Clear figure 2", "Löschen?"], "ok": True}}
    return meta


def _thumbnail(rng: random.Random) -> bytes:
    header = b"\x89PNG\r\n\x1a\n"
    return header + rng.randbytes(rng.randint(200, 800))


def _build_rows(
    posters: int, seed: int
) -> tuple[
    list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]
]:
    rng = random.Random(seed)

    institutions = [(i + 1, name) for i, name in enumerate(_INSTITUTIONS)]

    n_authors = max(50, posters // 2)
    authors: list[tuple[Any, ...]] = []
    for author_id in range(1, n_authors + 1):
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        authors.append(
            (
                author_id,
                name,
                _maybe(rng, 0.2, _orcid(rng)),
                _maybe(rng, 0.1, rng.randint(1, len(institutions))),
            )
        )

    poster_rows: list[tuple[Any, ...]] = []
    link_rows: list[tuple[Any, ...]] = []
    for poster_id in range(1, posters + 1):
        title = f"{rng.choice(_METHODS)} {rng.choice(_TOPICS)} {rng.choice(_CONTEXTS)}" + (
            f": part {rng.randint(2, 4)}" if rng.random() < 0.1 else ""
        )
        chosen = rng.sample(range(1, n_authors + 1), rng.randint(1, 6))
        names: list[str | None] = [authors[a - 1][1] for a in chosen]
        if rng.random() < 0.02:
            names.append(None)  # an anonymous contributor: NULL array element
        author_array = None if rng.random() < 0.03 else names
        published = None
        if rng.random() >= 0.04:
            published = _EPOCH + timedelta(
                seconds=rng.randrange(11 * 365 * 86400), microseconds=rng.randrange(1_000_000)
            )
        created = (published or _EPOCH) + timedelta(minutes=rng.randint(0, 60 * 24 * 30))
        poster_rows.append(
            (
                poster_id,
                title,
                _maybe(rng, 0.05, _abstract(rng)),
                author_array,
                _metadata(rng, poster_id),
                _maybe(rng, 0.05, rng.choice(_CONFERENCES)),
                published,
                created,
                _maybe(rng, 0.1, _thumbnail(rng)),
                _maybe(rng, 0.1, f"10.5555/posters.{poster_id:07d}"),
            )
        )
        for position, author_id in enumerate(chosen, start=1):
            link_rows.append((poster_id, author_id, position))

    return institutions, authors, poster_rows, link_rows


def load_sample(dsn: str, posters: int = 2000, seed: int = 42) -> None:
    """Create the Posters.science schema in ``dsn`` and fill it deterministically.

    The same ``posters``/``seed`` always produce byte-identical contents (and so the
    same :func:`fingerprint`).  Fails if the tables already exist.
    """
    if posters < 0:
        raise ValueError("posters must be >= 0")
    institutions, authors, poster_rows, link_rows = _build_rows(posters, seed)

    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'")
        cur.execute(SCHEMA_SQL)

        with cur.copy("COPY institutions (id, name) FROM STDIN") as copy:
            copy.set_types(["int4", "text"])
            for row in institutions:
                copy.write_row(row)

        with cur.copy("COPY authors (id, name, orcid, institution_id) FROM STDIN") as copy:
            copy.set_types(["int8", "text", "text", "int4"])
            for row in authors:
                copy.write_row(row)

        with cur.copy(
            "COPY posters (id, title, abstract, authors, metadata, conference, "
            "published_at, created_at, thumbnail, doi) FROM STDIN"
        ) as copy:
            copy.set_types(
                [
                    "int8",
                    "text",
                    "text",
                    "text[]",
                    "jsonb",
                    "text",
                    "timestamptz",
                    "timestamptz",
                    "bytea",
                    "text",
                ]
            )
            for row in poster_rows:
                meta = row[4]
                copy.write_row((*row[:4], None if meta is None else Jsonb(meta), *row[5:]))

        with cur.copy("COPY poster_authors (poster_id, author_id, position) FROM STDIN") as copy:
            copy.set_types(["int8", "int8", "int4"])
            for row in link_rows:
                copy.write_row(row)

        for table in ("institutions", "authors", "posters"):
            cur.execute(
                sql.SQL(
                    "SELECT setval(pg_get_serial_sequence({t}, 'id'), "
                    "(SELECT coalesce(max(id), 0) + 1 FROM {i}), false)"
                ).format(t=sql.Literal(table), i=sql.Identifier(table))
            )
        cur.execute("SELECT setval('poster_number_seq', %s)", (100000 + posters,))
        cur.execute(
            "INSERT INTO audit.load_log (loaded_at, posters, seed, note) VALUES (%s, %s, %s, %s)",
            (_EPOCH, posters, seed, "Posters.science sample data"),
        )
        cur.execute("ANALYZE")
