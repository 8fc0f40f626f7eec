"""``citesearch index --upgrade``: bring an index written by the previous format (one folder per version, with its
own passages.sqlite, vectors and bm25/) to the segmented format, without re-embedding anything.

The published legacy version becomes one segment: its documents and passages as stored (same passage ids, so
citations and the journal's history stay valid), its vectors as stored, postings and tables built from them. The
new version is published like any write; the legacy folders are pruned as older versions.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from index_store.centroids import IvfSettings, centroids_for
from index_store.derived import segment_contents_from_store
from index_store.errors import IndexNotFoundError, IndexStoreError
from index_store.keyword import KeywordSettings
from index_store.layout import VERSIONS_DIR, next_segment_name, segment_dir
from index_store.manifest import (
    FORMAT_VERSION,
    LEGACY_FORMAT_VERSION,
    Manifest,
    SegmentRef,
    corpus_fingerprint,
    file_info,
)
from index_store.segment_io import SEGMENT_JSON, STORE_FILE, build_segment
from index_store.sqlite_store import PassageStore, connect
from index_store.vectors import load_vector_index
from index_store.versions import _next_version_name, current_version, publish_manifest, write_lock


def upgrade_index(index_dir: Path, *, lock_timeout: float = 0.0, keep_versions: int = 3) -> Manifest:
    """Publish the legacy published version as a one-segment version of the current format; returns its manifest.
    Raises ``IndexStoreError`` when there is nothing to upgrade."""
    index_dir = Path(index_dir)
    with write_lock(index_dir, lock_timeout):
        current = current_version(index_dir)
        if current is None:
            raise IndexNotFoundError(f"no index in {index_dir}; nothing to upgrade")
        version_dir = index_dir / VERSIONS_DIR / current
        old = Manifest.read(version_dir)
        if old.format_version != LEGACY_FORMAT_VERSION:
            raise IndexStoreError(
                f"index version {current} in {index_dir} is format {old.format_version}, not "
                f"{LEGACY_FORMAT_VERSION}: nothing to upgrade"
            )
        from index_store.manifest import verify_files

        problems = verify_files(version_dir, old.files)
        if problems:
            raise IndexStoreError(
                f"index version {current} in {index_dir} is damaged ({'; '.join(problems)}); re-index instead: "
                f"citesearch index PATH --index-dir {index_dir}"
            )
        vectors = load_vector_index(old.vector_backend, version_dir)
        with contextlib.closing(connect(version_dir / STORE_FILE, read_only=True)) as db:
            contents = segment_contents_from_store(
                PassageStore(db), lambda ids: vectors.vectors_for(np.asarray(ids, dtype=np.int64)), old.model.dim
            )
            next_id = int(PassageStore(db).get_meta("next_passage_id", "0") or 0)
            hashes = PassageStore(db).document_hashes()
        recorded = old.extra.get("keyword")
        settings = (
            KeywordSettings(**{k: v for k, v in recorded.items() if k in KeywordSettings.__dataclass_fields__})
            if isinstance(recorded, dict)
            else None
        )
        name = next_segment_name(index_dir)
        # A legacy index above the IVF threshold was IVF: its one segment is again, from centroids trained here.
        count = sum(len(item[1]) for item in contents)
        planned = centroids_for(
            index_dir,
            None,
            old.vector_backend,
            IvfSettings(),
            count,
            total=count,
            dim=old.model.dim,
            sources=lambda: [(np.concatenate([item[3] for item in contents]), None)],
        )
        segment = build_segment(
            segment_dir(index_dir, name),
            contents,
            dim=old.model.dim,
            keyword=settings,
            centroids=planned.centroids,
            ivf_min_vectors=planned.settings.min_vectors,
        )
        key = f"segments/{name}/{SEGMENT_JSON}"
        files = {key: file_info(index_dir / key)}
        if planned.trained is not None and planned.settings.centroids is not None:
            files[planned.settings.centroids] = planned.trained
        version = _next_version_name(index_dir)
        extra = dict(old.extra)
        extra["keyword"] = None if settings is None else {"backend": "segments", **settings.to_dict()}
        extra["ivf"] = planned.settings.to_dict()
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            version=version,
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            model=old.model,
            vector_backend=old.vector_backend,
            chunker=old.chunker,
            counts=dict(old.counts),
            corpus_fingerprint=corpus_fingerprint(hashes),
            files=files,
            build={"upgrade": {"from": current, "format": LEGACY_FORMAT_VERSION}},
            extra=extra,
            base_version=current,
            segments=(SegmentRef(name, None, len(segment), 0),),
            next_passage_id=max(next_id, int(segment.ids[-1]) + 1 if len(segment) else 0),
        )
        return publish_manifest(index_dir, manifest, keep=keep_versions)
