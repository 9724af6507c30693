"""The shape of a workflow definition: which step follows which, and what makes a definition
well formed (no unknown step ids, no cycle, no unreachable step, parallel branches that stay
apart). Pure: no database, no templates (``hub.services.workflows`` checks those).

Steps are one flat list. A run starts at the first. After a step comes its ``next`` (a step
id; ``null`` ends the path), or when it has none the step that follows it in the list (a
``parallel`` step: the first later step none of its branches reaches). A ``condition`` goes to
``then`` or ``else`` (each defaulting the same way). A ``parallel`` step starts each of its
``branches`` (step ids): a branch is the path from there to its end, and its steps belong
to that branch alone; once the branches have ended (``join: all``) or one has (``any``), the
run goes on after the parallel step.
"""

from __future__ import annotations

KINDS = ("agent", "tool", "approval", "condition", "parallel", "wait")
_DEFAULT = object()


class Graph:
    def __init__(self, steps: list[dict]) -> None:
        self.steps = steps
        self.index = {}
        self._defaults: dict[str, str | None] = {}
        self._busy: set[str] = set()
        for i, step in enumerate(steps):
            self.index.setdefault(step.get("id"), i)

    def step(self, step_id: str) -> dict:
        return self.steps[self.index[step_id]]

    @property
    def first(self) -> str:
        return self.steps[0]["id"]

    def _default(self, step_id: str) -> str | None:
        if step_id in self._defaults:
            return self._defaults[step_id]
        i = self.index[step_id]
        step = self.steps[i]
        if step.get("kind") != "parallel":
            return self.steps[i + 1]["id"] if i + 1 < len(self.steps) else None
        if step_id in self._busy:  # a branch leads back here: a cycle, reported as one
            return None
        self._busy.add(step_id)
        try:
            inside = set()
            for branch in step.get("branches") or []:
                if branch in self.index:
                    inside |= self.reach(branch)
            found = next((s["id"] for s in self.steps[i + 1 :] if s.get("id") not in inside), None)
        finally:
            self._busy.discard(step_id)
        self._defaults[step_id] = found
        return found

    def successor(self, step_id: str) -> str | None:
        """The step after ``step_id`` (for a condition: when it has no ``then``/``else``)."""
        step = self.step(step_id)
        if "next" in step:
            return step["next"]
        return self._default(step_id)

    def branch_target(self, step_id: str, result: bool) -> str | None:
        """Where a condition goes on ``result``."""
        step = self.step(step_id)
        key = "then" if result else "else"
        return step[key] if key in step else self.successor(step_id)

    def edges(self, step_id: str) -> list[str]:
        """Every step ``step_id`` may lead to directly (branches included)."""
        step = self.step(step_id)
        kind = step.get("kind")
        if kind == "condition":
            out = [self.branch_target(step_id, True), self.branch_target(step_id, False)]
        elif kind == "parallel":
            out = [*(step.get("branches") or []), self.successor(step_id)]
        else:
            out = [self.successor(step_id)]
        return [target for target in out if target is not None and target in self.index]

    def reach(self, start: str, avoiding: set | frozenset = frozenset()) -> set[str]:
        """Every step reachable from ``start`` (itself included) on paths that do not pass
        through ``avoiding``."""
        seen: set[str] = set()
        stack = [start]
        while stack:
            node = stack.pop()
            if node in seen or node in avoiding:
                continue
            seen.add(node)
            stack.extend(self.edges(node))
        return seen

    # --- checks ----------------------------------------------------------------------------

    def problems(self) -> list[tuple[str, str]]:
        """``(path, message)`` for each structural fault, paths relative to the body."""
        out: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        for i, step in enumerate(self.steps):
            if step.get("id") in seen:
                out.append((f"steps[{i}].id", f"repeats steps[{seen[step['id']]}].id"))
            else:
                seen[step.get("id")] = i
        for i, step in enumerate(self.steps):
            for key in ("next", "then", "else", "guards"):
                target = step.get(key)
                if target is not None and target not in self.index:
                    out.append((f"steps[{i}].{key}", f"no step has the id {target!r}"))
            for j, branch in enumerate(step.get("branches") or []):
                if branch not in self.index:
                    out.append((f"steps[{i}].branches[{j}]", f"no step has the id {branch!r}"))
        if out:
            return out
        cycle = self._cycle()
        if cycle:
            i = self.index[cycle[0]]
            path = " → ".join(cycle)
            return [(f"steps[{i}]", f"the steps form a cycle: {path}")]
        reachable = self.reach(self.first)
        for i, step in enumerate(self.steps):
            if step["id"] not in reachable:
                out.append((f"steps[{i}]", "no path from the first step reaches this step"))
        out.extend(self._branch_problems())
        for i, step in enumerate(self.steps):
            guarded = self.guarded(step["id"]) if step.get("kind") == "approval" else None
            if step.get("kind") != "approval":
                continue
            if guarded is None:
                out.append((f"steps[{i}].guards", "an approval step guards the step after it"))
            elif self.step(guarded).get("kind") not in ("agent", "tool"):
                out.append((f"steps[{i}].guards", "only an agent or a tool step can be guarded"))
            elif guarded == step["id"] or guarded not in self.reach(step["id"]):
                out.append((f"steps[{i}].guards", "the guarded step must come after the approval"))
            elif guarded in self.reach(self.first, {step["id"]}):
                out.append(
                    (
                        f"steps[{i}].guards",
                        f"a path reaches {guarded!r} without passing this approval",
                    )
                )
        return out

    def guarded(self, approval_id: str) -> str | None:
        """The step an approval step guards: ``guards``, else the step after it."""
        step = self.step(approval_id)
        return step.get("guards") or self.successor(approval_id)

    def guard_of(self, step_id: str) -> str | None:
        """The approval step that guards ``step_id``, if one does."""
        for step in self.steps:
            if step.get("kind") == "approval" and self.guarded(step["id"]) == step_id:
                return step["id"]
        return None

    def _cycle(self) -> list[str] | None:
        state: dict[str, int] = {}  # 1 on the stack, 2 done

        def visit(node: str, trail: list[str]) -> list[str] | None:
            state[node] = 1
            trail.append(node)
            for target in self.edges(node):
                if state.get(target) == 1:
                    return [*trail[trail.index(target) :], target]
                if target not in state:
                    found = visit(target, trail)
                    if found:
                        return found
            trail.pop()
            state[node] = 2
            return None

        for step in self.steps:
            if step["id"] not in state:
                found = visit(step["id"], [])
                if found:
                    return found
        return None

    def _branch_problems(self) -> list[tuple[str, str]]:
        out = []
        preds: dict[str, set[str]] = {step["id"]: set() for step in self.steps}
        for step in self.steps:
            for target in self.edges(step["id"]):
                preds[target].add(step["id"])
        for i, step in enumerate(self.steps):
            if step.get("kind") != "parallel":
                continue
            regions = []
            overlap = False
            for j, branch in enumerate(step.get("branches") or []):
                region = self.reach(branch)
                for k, other in enumerate(regions):
                    shared = sorted(region & other)
                    if shared:
                        overlap = True
                        out.append(
                            (
                                f"steps[{i}].branches[{j}]",
                                f"branches {k} and {j} both reach {shared[0]!r}: end each "
                                'branch with "next": null',
                            )
                        )
                regions.append(region)
            if overlap:
                continue
            for j, branch in enumerate(step.get("branches") or []):
                region = regions[j]
                after = self.successor(step["id"])
                if after is not None and after in region:
                    out.append(
                        (
                            f"steps[{i}].branches[{j}]",
                            f"branch {j} reaches {after!r}, the step after the join: end the "
                            'branch with "next": null',
                        )
                    )
                for node in region - {branch}:
                    outside = preds[node] - region
                    if outside:
                        n = self.index[node]
                        out.append(
                            (
                                f"steps[{n}]",
                                f"this step is in branch {j} of {step['id']!r} and also "
                                f"follows {sorted(outside)[0]!r}, outside that branch",
                            )
                        )
                if preds[branch] - {step["id"]}:
                    out.append(
                        (
                            f"steps[{i}].branches[{j}]",
                            f"{branch!r} starts a branch, so no other step may lead to it",
                        )
                    )
        return out
