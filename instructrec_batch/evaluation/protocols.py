"""Leave-one-out evaluation sets: which candidates each user is ranked on, and where the target is.

Split (shared with retrieval and tuning): a user's last interaction is the test target; the one before
is the validation target (used only by tuning and template feedback). Everything here is pure: pandas
frames and numpy arrays in, an ``EvalSet`` out, so the same code serves Spark-collected data and tests.

Protocols
- ``sampled`` (InstructRec / LLMRank): the target among ``n_negatives`` items drawn uniformly from the
  catalogue, never ones the user interacted with (anywhere in the sequence, not only the history).
  Each user's draws come from a generator seeded by (seed, user id), so a user's candidates do not
  depend on which other users are evaluated or in which order. The target's column is drawn too: a
  model with a position bias (always answering "A") gains nothing from the protocol's layout.
- ``retrieval`` (LlamaRec): the retrieval stage's top-N, built from the history only, in retrieval
  order; a user whose target is not among them keeps ``target_index = -1`` (a miss for every system).

Either set may carry the retrieval stage's order of its candidates (``ranks``): the column order in the
retrieval protocol (``retrieval_set`` fills it); for sampled candidates, ``rank_by_retrieval`` orders them as the retrieval stage
would (its deep list first, then popularity, as its back-fill does), so the served score (the model
fused with the retrieval rank) and the retrieval order itself can be measured there too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Split:
    """Per-user chronological history and held-out item (one row per user with a target)."""

    user_ids: np.ndarray  # [n] str, sorted
    histories: list[list[str]]  # oldest first; never contains the target's interaction
    targets: np.ndarray  # [n] item ids
    seen: list[set[str]]  # every item of the user's whole sequence (history, target and later items)

    def subset(self, user_ids) -> "Split":
        """The rows of these users, in this split's order (unknown ids are ignored)."""
        wanted = set(user_ids)
        rows = [i for i, u in enumerate(self.user_ids) if u in wanted]
        return Split(
            self.user_ids[rows],
            [self.histories[i] for i in rows],
            self.targets[rows],
            [self.seen[i] for i in rows],
        )


@dataclass(frozen=True)
class EvalSet:
    protocol: str  # sampled | retrieval
    split: str  # test | validation
    user_ids: np.ndarray  # [n] str
    candidates: np.ndarray  # [n, c] object: item ids, None = padding (fewer candidates than c)
    target_index: np.ndarray  # [n] int64, -1 = target not among the candidates
    targets: np.ndarray  # [n] the held-out item ids
    # [n, c] float: the retrieval stage's rank of each candidate among the row's candidates (1 = first,
    # NaN = padding); None: unknown (sampled candidates nobody ordered).
    ranks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.user_ids)

    def has_users(self, user_ids) -> np.ndarray:
        """[n] bool: which rows belong to these users. A hash lookup: ``np.isin`` on object arrays
        compares every pair (28 s for 50,546 users against themselves, where this takes milliseconds)."""
        return pd.Index(self.user_ids).isin(pd.Index(np.asarray(list(user_ids), dtype=object)))

    def subset(self, user_ids) -> "EvalSet":
        """The rows of these users, in this set's order (unknown ids are ignored)."""
        return self.rows(self.has_users(user_ids))

    def rows(self, keep: np.ndarray) -> "EvalSet":
        """The rows where the boolean mask ``keep`` is true."""
        return replace(
            self,
            user_ids=self.user_ids[keep],
            candidates=self.candidates[keep],
            target_index=self.target_index[keep],
            targets=self.targets[keep],
            ranks=None if self.ranks is None else self.ranks[keep],
        )

    def candidates_frame(self) -> pd.DataFrame:
        """The candidates shape other stages take (user_id, item_id, retrieval_rank, retrieval_score,
        source): column j becomes retrieval_rank j + 1, so prompts list candidates in this set's order."""
        n, c = self.candidates.shape
        frame = pd.DataFrame(
            {
                "user_id": np.repeat(self.user_ids, c),
                "item_id": self.candidates.ravel(),
                "retrieval_rank": np.tile(np.arange(1, c + 1, dtype=np.int32), n),
            }
        )
        frame = frame[frame["item_id"].notna()].reset_index(drop=True)
        frame["retrieval_score"] = -frame["retrieval_rank"].astype(np.float64)
        frame["source"] = self.protocol
        return frame

    def align(self, scored: pd.DataFrame) -> np.ndarray:
        """A system's long ``(user_id, item_id, score)`` frame as the [n, c] matrix ``ranking_metrics``
        takes. Padding stays NaN; a real candidate the system left unscored gets -inf (ranked last,
        and a tie with other unscored ones, which the pessimistic tie rule charges to the target)."""
        n, c = self.candidates.shape
        key = pd.MultiIndex.from_arrays([np.repeat(self.user_ids, c), self.candidates.ravel()])
        lookup = scored.drop_duplicates(["user_id", "item_id"]).set_index(["user_id", "item_id"])["score"]
        values = lookup.reindex(key).to_numpy(dtype=np.float64).reshape(n, c)
        real = np.not_equal(self.candidates, None)
        values[real & np.isnan(values)] = -np.inf
        values[~real] = np.nan
        return values


# ── splits ───────────────────────────────────────────────────────────────────────────────────
def sequences(interactions: pd.DataFrame) -> pd.Series:
    """user_id -> item ids oldest first. Ordered by position then item_id, as retrieval's
    ``sequence_index`` does, so both sides agree on which item is last."""
    ordered = interactions.sort_values(["user_id", "position", "item_id"], kind="stable")
    return ordered.groupby("user_id", sort=True)["item_id"].agg(list)


def leave_one_out_split(interactions: pd.DataFrame, stage: str = "test") -> Split:
    """``test``: target = last item, history = the rest. ``validation``: target = second to last,
    history = everything before it (the test item is not shown). A user needs one history item before
    the target, so users with fewer than 2 (test) or 3 (validation) interactions are left out."""
    holdout = {"test": 1, "validation": 2}[stage]
    seqs = sequences(interactions)
    seqs = seqs[seqs.map(len) > holdout]
    user_ids = seqs.index.to_numpy(dtype=object)
    histories = [s[: len(s) - holdout] for s in seqs]
    targets = np.array([s[len(s) - holdout] for s in seqs], dtype=object)
    seen = [set(s) for s in seqs]
    return Split(user_ids, histories, targets, seen)


# ── sampled protocol ─────────────────────────────────────────────────────────────────────────
def _user_seed(seed: int, user_id: str) -> list[int]:
    # Python's hash() is salted per process; a digest keeps the draw identical across runs.
    digest = hashlib.blake2b(str(user_id).encode(), digest_size=8).digest()
    return [int(seed), int.from_bytes(digest, "little")]


def draw_unseen(
    catalogue: np.ndarray, seen: set[str], n_negatives: int, rng: np.random.Generator
) -> list[str]:
    """``n_negatives`` distinct catalogue items outside ``seen``, uniformly (rejection sampling: the
    catalogue is large next to one user's items, so a draw is almost never wasted)."""
    picked: list[str] = []
    chosen: set[str] = set()
    tries = 0
    while len(picked) < n_negatives:
        for idx in rng.integers(0, len(catalogue), size=2 * n_negatives):
            item = catalogue[idx]
            if item not in seen and item not in chosen:
                picked.append(item)
                chosen.add(item)
                if len(picked) == n_negatives:
                    break
        tries += 1
        if tries > 1000:  # a catalogue barely larger than the user's own items: say so, don't spin
            raise ValueError(f"could not draw {n_negatives} unseen negatives from {len(catalogue)} items")
    return picked


def sampled_set(split: Split, catalogue, n_negatives: int, seed: int, stage: str = "test") -> EvalSet:
    """The target among ``n_negatives`` seeded negatives, at a seeded random column."""
    catalogue = np.array(sorted(set(catalogue)), dtype=object)
    n = len(split.user_ids)
    cands = np.empty((n, n_negatives + 1), dtype=object)
    target_index = np.empty(n, dtype=np.int64)
    for row, (user, target, seen) in enumerate(zip(split.user_ids, split.targets, split.seen)):
        rng = np.random.default_rng(_user_seed(seed, user))
        negatives = draw_unseen(catalogue, seen | {target}, n_negatives, rng)
        at = int(rng.integers(0, n_negatives + 1))
        cands[row] = negatives[:at] + [target] + negatives[at:]
        target_index[row] = at
    return EvalSet("sampled", stage, split.user_ids, cands, target_index, split.targets)


# ── retrieval protocol ───────────────────────────────────────────────────────────────────────
def retrieval_set(split: Split, candidates: pd.DataFrame, n_candidates: int, stage: str = "test") -> EvalSet:
    """The retrieval stage's top ``n_candidates`` per split user (built from the history), in
    retrieval order. Users retrieval gave nothing keep an all-padding row: they still count."""
    top = candidates[candidates["retrieval_rank"] <= n_candidates]
    top = top[top["user_id"].isin(split.user_ids)].sort_values(["user_id", "retrieval_rank"], kind="stable")
    lists = top.groupby("user_id", sort=False)["item_id"].agg(list)
    n = len(split.user_ids)
    cands = np.full((n, n_candidates), None, dtype=object)
    target_index = np.full(n, -1, dtype=np.int64)
    for row, (user, target) in enumerate(zip(split.user_ids, split.targets)):
        items = lists.get(user, [])
        cands[row, : len(items)] = items
        if target in items:
            target_index[row] = items.index(target)
    ranks = np.tile(np.arange(1, n_candidates + 1, dtype=np.float64), (n, 1))
    ranks[np.equal(cands, None)] = np.nan
    return EvalSet("retrieval", stage, split.user_ids, cands, target_index, split.targets, ranks)


def rank_by_retrieval(eval_set: EvalSet, retrieved: pd.DataFrame, popularity: pd.Series) -> EvalSet:
    """``eval_set`` with ``ranks``: each row's candidates in the order the retrieval stage gives them.
    ``retrieved`` (user_id, item_id, retrieval_rank) is its list for each user, as deep as wanted;
    candidates outside it follow, most popular first (``popularity``: item_id -> users, the stage's own
    back-fill order), ties by item id, as the candidates stage breaks them."""
    n, c = eval_set.candidates.shape
    key = pd.MultiIndex.from_arrays([np.repeat(eval_set.user_ids, c), eval_set.candidates.ravel()])
    lookup = retrieved.drop_duplicates(["user_id", "item_id"]).set_index(["user_id", "item_id"])["retrieval_rank"]
    listed = lookup.reindex(key).to_numpy(dtype=np.float64)
    popular = popularity.reindex(pd.Index(eval_set.candidates.ravel())).fillna(0.0).to_numpy(dtype=np.float64)
    order = pd.DataFrame({
        "row": np.repeat(np.arange(n), c),
        "listed": np.nan_to_num(listed, nan=np.inf),  # listed items first, in the list's order
        "unpopular": -popular,
        "item": pd.Series(eval_set.candidates.ravel(), dtype=object).fillna(""),
        "real": np.not_equal(eval_set.candidates.ravel(), None),
    })
    order = order[order["real"]].sort_values(["row", "listed", "unpopular", "item"], kind="stable")
    ranks = np.full(n * c, np.nan)
    ranks[order.index.to_numpy()] = order.groupby("row").cumcount().to_numpy() + 1
    return replace(eval_set, ranks=ranks.reshape(n, c))


# ── the LLM user sample ──────────────────────────────────────────────────────────────────────
def sample_users(user_ids, n: int, seed: int) -> np.ndarray:
    """A fixed seeded sample of ``n`` users: the ones with the smallest seeded digest, so the sample
    is the same whatever order users arrive in, and a larger n extends a smaller one."""
    user_ids = np.asarray(sorted(set(user_ids)), dtype=object)
    if n >= len(user_ids):
        return user_ids
    keys = np.array([_user_seed(seed, u)[1] for u in user_ids], dtype=np.uint64)
    return np.sort(user_ids[np.argsort(keys, kind="stable")[:n]])
