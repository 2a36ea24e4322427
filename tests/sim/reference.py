"""An independent FCFS / classic-EASY simulator, written apart from `suanli.sim` to check it.

No heap, no shared code: it walks the instants at which something happens (a submission or a
job's end), and at each one ends jobs, admits arrivals, then starts jobs: FCFS while the queue's
head fits; with EASY, when the head does not fit, it computes the head's reservation (shadow time)
and the units spare then (every job whose estimated end is at or before the shadow time counted),
and lets a later job start if it fits now and either ends by the shadow time or fits in the spare
units.
"""

from __future__ import annotations


def simulate(jobs: list[tuple[int, float, float, int, float]], capacity: int,
             easy: bool) -> dict[int, float]:
    """jobs: (id, submit, runtime, procs, requested), sorted by submit. Returns id → start."""
    start: dict[int, float] = {}
    # running entries: [actual_end, estimated_end, procs]
    running: list[list[float]] = []
    queue: list[tuple[int, float, float, int, float]] = []
    free = capacity
    nxt = 0
    n = len(jobs)
    while nxt < n or queue or running:
        candidates = [r[0] for r in running]
        if nxt < n:
            candidates.append(jobs[nxt][1])
        now = min(candidates)
        still = []
        for r in running:
            if r[0] <= now:
                free += int(r[2])
            else:
                still.append(r)
        running = still
        while nxt < n and jobs[nxt][1] <= now:
            queue.append(jobs[nxt])
            nxt += 1
        # FCFS part
        while queue and queue[0][3] <= free:
            jid, _, run, procs, req = queue.pop(0)
            start[jid] = now
            running.append([now + run, now + req, procs])
            free -= procs
        if not easy or not queue:
            continue
        need = queue[0][3]
        ends = sorted(r[1] for r in running)
        shadow = None
        for e in ends:
            acc = free + sum(int(r[2]) for r in running if r[1] <= e)
            if acc >= need:
                shadow = e
                break
        assert shadow is not None
        spare = free + sum(int(r[2]) for r in running if r[1] <= shadow) - need
        keep = [queue[0]]
        for job in queue[1:]:
            jid, _, run, procs, req = job
            ok = procs <= free and (now + req <= shadow or procs <= spare)
            if ok:
                if now + req > shadow:
                    spare -= procs
                start[jid] = now
                running.append([now + run, now + req, procs])
                free -= procs
            else:
                keep.append(job)
        queue = keep
    return start
