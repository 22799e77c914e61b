"""A rollout on a Ray cluster, submitted as a Ray job.

Start a cluster and submit this script (the job's driver finds the cluster itself):

    ray start --head --dashboard-host=127.0.0.1
    ray job submit --address http://127.0.0.1:8265 --working-dir examples -- \\
        python 04_ray_cluster_job.py --out /tmp/ray_job_episodes.jsonl
    ray job logs <id>  # or: ray job status <id>

Run directly (``python examples/04_ray_cluster_job.py``) it starts Ray on this machine instead.
The env actors are scheduled by the cluster; the code is the same as a local rollout but for
``pool=``. Code the actors need beyond toolgym (a custom environment) travels with
``--working-dir`` or ``RayEnvPool(runtime_env=...)``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path

from toolgym.rollouts import ScriptedPolicy, run_episodes, sample_tasks, save_episodes
from toolgym.rollouts.ray_pool import RayEnvPool

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--episodes", type=int, default=200)
parser.add_argument("--actors", type=int, default=2)
parser.add_argument("--out", type=Path, default=Path("runs/ray_cluster_job.jsonl"))
args = parser.parse_args()

env_id = "toolgym/unitconv-v0"
tasks = sample_tasks(env_id, n=args.episodes, seed=0)
# Inside `ray job submit`, RAY_ADDRESS names the cluster; run by hand, Ray starts here.
address = "auto" if os.environ.get("RAY_ADDRESS") else None
with RayEnvPool(actors=args.actors, num_cpus=0.5, address=address) as pool:
    episodes = run_episodes(env_id, ScriptedPolicy.gold(tasks), tasks=tasks, pool=pool)
    hosts = sorted({s["pid"] for s in pool.actor_stats()})

args.out.parent.mkdir(parents=True, exist_ok=True)
save_episodes(episodes, args.out)
summary = {
    "episodes": len(episodes),
    "reached_expected_state": sum(bool(e.reached_expected_state) for e in episodes),
    "stop_reasons": dict(Counter(e.stop_reason.value for e in episodes)),
    "actor_pids": hosts,
    "out": str(args.out),
}
print(json.dumps(summary))
