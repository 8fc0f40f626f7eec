"""Token vectors kept at index time (index_store/token_vectors.py): the basis and its codes against exact
arithmetic, what a write keeps and when, what a merge and a damaged file do to them, and the searcher reranking
from them instead of encoding the candidates per query."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from citesearch.fusion import FusionSettings
from citesearch.late_interaction import maxsim
from citesearch.search import Searcher, SearchRequest
from index_store import IndexCorruptError, open_index
from index_store.merging import merge_index
from index_store.segments import Segment
from index_store.token_vectors import TokenCodes, TokenProjection, encode_token_codes, load_tokens, write_merged_codes
from indexer.documents import Document, Unit
from indexer.pipeline import BuildOptions, apply_changes
from tests.fakes import HashingEmbedder, HashingTokenEmbedder


def _unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    vectors = rng.normal(size=(rows, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def _subspace(rng: np.random.Generator, dim: int = 96, rank: int = 20) -> np.ndarray:
    return np.linalg.qr(rng.normal(size=(dim, rank)))[0].T


def _low_rank_tokens(rng: np.random.Generator, rows: int, basis: np.ndarray) -> np.ndarray:
    """Unit rows that live in the subspace ``basis`` spans (about an offset), as contextual tokens mostly do."""
    rows_ = rng.normal(size=(rows, len(basis))) @ basis + 0.3 * basis[0]
    return (rows_ / np.linalg.norm(rows_, axis=1, keepdims=True)).astype(np.float32)


def test_the_basis_is_the_top_principal_directions() -> None:
    rng = np.random.default_rng(3)
    tokens = _low_rank_tokens(rng, 2000, _subspace(rng))
    projection = TokenProjection.fit(tokens, dims=32)
    centred = tokens - tokens.mean(axis=0)
    # Against a plain SVD: the same subspace (projections onto both agree), orthonormal rows
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(projection.components @ projection.components.T, np.eye(32), atol=1e-5)
    top = vt[:20]  # the data's rank: the 20 directions with variance
    np.testing.assert_allclose(top @ projection.components[:20].T @ projection.components[:20], top, atol=1e-4)
    assert TokenProjection.from_array(projection.to_array()).fingerprint == projection.fingerprint
    with pytest.raises(ValueError, match="at least one token vector"):
        TokenProjection.fit(np.zeros((0, 8), np.float32))
    with pytest.raises(ValueError, match="onto 16 dimensions"):
        TokenProjection.fit(tokens[:, :8], dims=16)


def test_maxsim_on_codes_matches_exact_maxsim_within_int8_rounding() -> None:
    rng = np.random.default_rng(5)
    basis = _subspace(rng)
    passages = [_low_rank_tokens(rng, n, basis) for n in (3, 40, 17, 120)]
    query = _low_rank_tokens(rng, 6, basis)
    projection = TokenProjection.fit(np.concatenate(passages), dims=32)
    stored = TokenCodes.of([projection.codes(p) for p in passages], projection.dims)
    approximate = maxsim(projection.project(query), [stored.rows(i) for i in range(len(stored))])
    # Tokens that lie in the basis keep their length and angles: exact MaxSim, to the codes' rounding
    np.testing.assert_allclose(approximate, maxsim(query, passages), atol=0.01)
    # One that does not is scaled back to unit length in it, so its best match (itself) still scores 1
    outside = _unit_rows(rng, 1, 96)
    assert maxsim(projection.project(outside), [projection.codes_to_rows(outside)])[0] == pytest.approx(1.0, abs=0.01)
    # A passage encoded at query time goes through the same codes as a stored one
    np.testing.assert_array_equal(projection.codes_to_rows(passages[1]), stored.rows(1))


def test_merged_codes_follow_their_positions_block_by_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import index_store.token_vectors as token_vectors

    monkeypatch.setattr(token_vectors, "MERGE_BLOCK", 2)  # several blocks per source, even here
    rng = np.random.default_rng(11)
    passages = [_unit_rows(rng, n, 16) for n in (2, 5, 1, 4, 3)]
    projection = TokenProjection.fit(np.concatenate(passages), dims=8)
    codes = TokenCodes.of([projection.codes(p) for p in passages], 8)
    keep = np.array([True, False, True, True, True])
    write_merged_codes(tmp_path, projection, [(codes, keep), (None, np.array([True, False, True])), (codes, ~keep)])
    loaded = load_tokens(tmp_path, 4 + 2 + 1)
    assert loaded is not None and loaded[0].fingerprint == projection.fingerprint
    merged = loaded[1]
    for new, old in enumerate((0, 2, 3, 4)):
        np.testing.assert_array_equal(merged.rows(new), codes.rows(old))
    assert [len(merged.rows(i)) for i in (4, 5)] == [0, 0]  # the source without codes: passages without rows
    np.testing.assert_array_equal(merged.rows(6), codes.rows(1))
    with pytest.raises(ValueError, match="do not fit a segment of 9"):
        load_tokens(tmp_path, 9)


def test_encoding_in_slices_fits_the_basis_once_and_reports_progress() -> None:
    embedder = HashingTokenEmbedder(dim=64)
    texts = [f"passage {i} about zebras and rivers number {i % 7}" for i in range(10)]
    done: list[int] = []
    projection, codes = encode_token_codes(
        embedder.encode_tokens, texts, None, slice_size=4, fit_min_tokens=50, progress=done.append
    )
    assert projection is not None and len(codes) == 10 and done == [4, 8, 10]
    # 4 texts of 8 words are not 50 tokens: the first slice waits for the second, and both get their codes
    assert [len(c) for c, _ in codes] == [8] * 10
    # Fewer tokens than a basis needs: none fitted, no codes
    assert encode_token_codes(embedder.encode_tokens, texts[:2], None, fit_min_tokens=50) == (None, [])
    again, _ = encode_token_codes(embedder.encode_tokens, texts[:2], projection)
    assert again is projection  # a basis given is reused, never refitted


class CountingTokenEmbedder(HashingTokenEmbedder):
    """Counts the texts it encodes token vectors for: the query alone when the index keeps the passages'."""

    def __init__(self, dim: int = 512) -> None:
        super().__init__(dim=dim)
        self.token_texts = 0

    def encode_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        self.token_texts += len(texts)
        return super().encode_tokens(texts)


def _doc(doc_id: str, body: str) -> Document:
    return Document(doc_id=doc_id, title=doc_id, text=body, source=doc_id, units=(Unit("article", 0, len(body)),))


DOCS = [
    _doc("zebra-river", "Zebras drink from the river at dawn while lions sleep."),
    _doc("zebra-only", "Zebras zebras zebras graze the savanna, zebras everywhere on the plains."),
    _doc("penguins", "Penguins swim in cold water far from any savanna."),
    _doc("owls", "Owls hunt mice at night over the fields."),
]
QUERY = SearchRequest(query="zebras dawn drink graze", k=3, explain=True)


def _options(rerank_depth: int | None, fit_min: int = 1) -> BuildOptions:
    """Build options recording the default "auto" fusion, with the rerank left to the profile (None) or set; these
    few documents are enough to fit a basis on (``fit_min`` tokens)."""
    fusion = FusionSettings(profile="auto", rerank_depth=rerank_depth)
    return BuildOptions(record={"fusion": fusion.to_dict()}, token_fit_min_tokens=fit_min)


def test_a_short_document_index_keeps_token_vectors_and_reranks_from_them_by_default(tmp_path: Path) -> None:
    embedder = CountingTokenEmbedder()
    apply_changes(tmp_path, embedder, upserts=DOCS, options=_options(None))
    with open_index(tmp_path) as reader:
        assert "token_vectors" in reader.manifest.extra
        searcher = Searcher(reader, embedder)  # the fusion the index records: auto, short, its rerank
        assert searcher.fusion.chosen == "short" and searcher.fusion.rerank_depth == 30
        before = embedder.token_texts
        hits = searcher.search(QUERY).hits
        assert embedder.token_texts - before == 1  # the query only: the passages' come from the index
        assert hits[0].citation.doc_id == "zebra-river"  # MaxSim 3/4 of the query's words lifts it
        assert hits[0].explain is not None and hits[0].explain.late_interaction_score == pytest.approx(0.75, abs=1e-3)


def test_an_index_without_token_vectors_turns_the_profiles_rerank_off_and_says_why(tmp_path: Path) -> None:
    embedder = CountingTokenEmbedder()
    apply_changes(tmp_path, embedder, upserts=DOCS, options=_options(0))  # built with the rerank off
    with open_index(tmp_path) as reader:
        assert "token_vectors" not in reader.manifest.extra
        default = Searcher(reader, embedder, FusionSettings(profile="auto"))
        assert default.fusion.rerank_depth == 0
        assert default.fusion.reason is not None and "keeps no token vectors" in default.fusion.reason
        # An operator who sets the depth gets the rerank all the same, encoding the candidates per query
        asked = Searcher(reader, embedder, FusionSettings(profile="auto", rerank_depth=2))
        before = embedder.token_texts
        hits = asked.search(QUERY).hits
        assert embedder.token_texts - before > 1 and hits[0].citation.doc_id == "zebra-river"
        # An embedder without token vectors: the profile's rerank is off, an asked-for one is an error
        plain = Searcher(reader, HashingEmbedder(dim=512), FusionSettings(profile="auto"))
        assert plain.fusion.rerank_depth == 0 and "gives no token vectors" in str(plain.fusion.reason)


def test_later_writes_reuse_the_basis_and_a_merge_copies_the_codes(tmp_path: Path) -> None:
    embedder = CountingTokenEmbedder()
    apply_changes(tmp_path, embedder, upserts=DOCS[:2], options=_options(None))
    apply_changes(tmp_path, embedder, upserts=DOCS[2:], options=_options(None))
    with open_index(tmp_path) as reader:
        segments: list[Segment] = reader.view.segments
        assert len(segments) == 2 and len({s.token_basis for s in segments}) == 1  # one basis for the index
        ids = reader.passage_ids()
        before = reader.token_vectors(ids.tolist())
        assert before is not None and all(row is not None for row in before.rows)
    merge_index(tmp_path, optimize=True)
    with open_index(tmp_path) as reader:
        assert len(reader.view.segments) == 1
        after = reader.token_vectors(ids.tolist())
        assert after is not None and after.projection.fingerprint == before.projection.fingerprint
        for old, new in zip(before.rows, after.rows, strict=True):
            np.testing.assert_array_equal(old, new)


def test_a_basis_waits_for_enough_tokens_and_a_merge_keeps_the_codes_it_has(tmp_path: Path) -> None:
    embedder = CountingTokenEmbedder()
    apply_changes(tmp_path, embedder, upserts=DOCS[:1], options=_options(None, fit_min=1000))  # too few tokens
    with open_index(tmp_path) as reader:
        assert "token_vectors" not in reader.manifest.extra and reader.token_vectors([]) is None
    apply_changes(tmp_path, embedder, upserts=DOCS[1:], options=_options(None, fit_min=20))  # enough: a basis
    merge_index(tmp_path, optimize=True)
    with open_index(tmp_path) as reader:
        assert len(reader.view.segments) == 1 and "token_vectors" in reader.manifest.extra
        doc_of = {p.passage_id: p.doc_id for p in reader.iter_passages()}
        found = reader.token_vectors(sorted(doc_of))
        assert found is not None
        kept = {doc_of[pid] for pid, row in zip(sorted(doc_of), found.rows, strict=True) if row is not None}
        assert kept == {d.doc_id for d in DOCS[1:]}  # the first write's passages have none, the others kept theirs
        before = embedder.token_texts
        hits = Searcher(reader, embedder).search(QUERY).hits
        first = next(h for h in hits if h.citation.doc_id == "zebra-river")
        assert first.explain is not None and first.explain.late_interaction_score is not None  # reranked all the same
        assert embedder.token_texts - before == 2  # the query, and that one passage, encoded from its text


def test_a_damaged_token_file_is_named_and_the_segment_rebuilt_without_codes(tmp_path: Path) -> None:
    embedder = CountingTokenEmbedder()
    apply_changes(tmp_path, embedder, upserts=DOCS, options=_options(None))
    codes = next(tmp_path.glob("segments/*/tokens/codes.npy"))
    data = bytearray(codes.read_bytes())
    data[-1] ^= 0xFF
    codes.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match=r"tokens/codes\.npy"):
        Segment.load(codes.parent.parent)
    # A derived file: the next write rebuilds the segment from its store, every document kept
    apply_changes(
        tmp_path, embedder, upserts=[_doc("cranes", "Cranes dance in the marsh at dawn.")], options=_options(None)
    )
    with open_index(tmp_path) as reader:
        assert reader.manifest.counts["documents"] == 5
        hits = Searcher(reader, embedder).search(QUERY).hits
        assert hits[0].citation.doc_id == "zebra-river"  # the rebuilt segment's passages are encoded per query


def test_a_write_that_mixes_documents_with_and_without_codes_publishes_nothing(tmp_path: Path) -> None:
    from index_store import IndexWriter, ModelInfo
    from indexer.chunker import Chunker, ChunkerSettings

    embedder = HashingTokenEmbedder(dim=64)
    chunker = Chunker(embedder, ChunkerSettings())
    model = ModelInfo(name=embedder.name, dim=embedder.dim, max_tokens=embedder.max_tokens)
    first, second = (chunker.chunk(doc) for doc in DOCS[:2])
    with IndexWriter.begin(tmp_path, model=model, chunker=ChunkerSettings().to_dict()) as writer:
        writer.upsert_document(DOCS[0], first, embedder.encode([p.embed_text for p in first]))
        texts = [p.embed_text for p in second]
        projection, codes = encode_token_codes(embedder.encode_tokens, texts, None, fit_min_tokens=1)
        writer.token_projection = projection
        writer.upsert_document(DOCS[1], second, embedder.encode([p.embed_text for p in second]), codes)
        with pytest.raises(ValueError, match="some documents of this write bring token codes"):
            writer.publish()
    assert not list(tmp_path.glob("segments/s*"))


SCIFACT = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets" / "scifact"


@pytest.mark.skipif(not SCIFACT.is_dir(), reason="needs ../shared/datasets/scifact (the shared datasets folder)")
def test_real_model_stored_rerank_agrees_with_the_rerank_encoded_per_query(tmp_path: Path, real_embedder: Any) -> None:
    import json

    from indexer.loaders import load_documents

    docs = load_documents([SCIFACT / "corpus.jsonl"]).documents[:300]
    lines = (SCIFACT / "queries.jsonl").read_text(encoding="utf-8").splitlines()[:20]
    queries = [json.loads(line)["text"] for line in lines]
    apply_changes(tmp_path / "stored", real_embedder, upserts=docs, options=_options(None))
    apply_changes(tmp_path / "plain", real_embedder, upserts=docs, options=_options(0))
    asked = FusionSettings(profile="auto", rerank_depth=30, rerank_weight=1.5)
    with open_index(tmp_path / "stored") as stored_reader, open_index(tmp_path / "plain") as plain_reader:
        stored = Searcher(stored_reader, real_embedder)  # the profile's rerank, on the stored codes
        encoded = Searcher(plain_reader, real_embedder, asked)  # the same rerank, encoding candidates per query
        assert stored.fusion.rerank_depth == 30 and stored.fusion.rerank_weight == 1.5
        same_top, correlations = 0, []
        for query in queries:
            a = stored.search(SearchRequest(query=query, k=10, explain=True)).hits
            b = encoded.search(SearchRequest(query=query, k=10, explain=True)).hits
            same_top += a[0].citation.doc_id == b[0].citation.doc_id
            scores_a = {h.passage_id: h.explain.late_interaction_score for h in a if h.explain}
            scores_b = {h.passage_id: h.explain.late_interaction_score for h in b if h.explain}
            shared = [p for p in scores_a if p in scores_b and scores_a[p] is not None and scores_b[p] is not None]
            if len(shared) >= 5:
                correlations.append(np.corrcoef([scores_a[p] for p in shared], [scores_b[p] for p in shared])[0, 1])
        # 64 int8 dimensions against the model's exact token vectors: the same top hit for nearly every query,
        # MaxSim that follows the exact one among the best hits (0.79 on average when measured)
        assert same_top >= 16
        assert len(correlations) >= 10 and float(np.mean(correlations)) > 0.6
