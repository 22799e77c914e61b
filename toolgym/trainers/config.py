"""``TrainConfig``: everything a training run depends on, validated before any work starts.

A config is plain data (pydantic), loadable from YAML and saved next to the run's outputs, so a
run can be repeated from its folder alone. Unknown fields are refused with a "did you mean",
and contradictory combinations (PPO without a value model, GRPO with one sample per task, a
KL term without a reference...) are refused with a message naming the field and the fix.

>>> cfg = TrainConfig.model_validate({"env": {"id": "toolgym/unitconv-v0"}, "algorithm": {"group_size": 4}})
>>> cfg.algorithm.loss
'grpo'
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from toolgym.envs.formats import chat_template_of, detect_format
from toolgym.envs.registry import make
from toolgym.errors import ConfigError, did_you_mean
from toolgym.rubrics import load_rubric, rubric_for
from toolgym.rubrics.catalog import catalog_rubric_by_name
from toolgym.trainers.rl.importance import Correction
from toolgym.trainers.schedule import Schedule, lr_factor

LossKind = Literal["grpo", "dapo", "dr_grpo", "k2"]
"""grpo: clipped surrogate, std-normalized advantages, per-sequence mean.
dapo: clip-higher surrogate, token-level mean over the whole accumulated batch.
dr_grpo: advantages not divided by the group std, sum over tokens / (batch x constant).
k2: Kimi K1.5/K2 squared loss with the group-mean baseline and tau-weighted log-ratio."""


ImportanceKind = Correction
"""none: train on the behaviour log-probs as they came. truncated / masked: see ``AlgorithmSection.importance``."""

SystemMode = Literal["inprocess", "sync", "async"]
"""inprocess: the readable reference trainer in one process. sync: roles on Ray, generation then update.
async: generation of later iterations overlaps the update, at most ``system.max_staleness`` versions behind."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(_Section):
    """Which policy to train."""

    path: str | None = None
    """A local model folder (``save_pretrained`` output with a tool-capable chat template)."""
    tiny: Literal["kimi", "qwen3", "base"] | None = "kimi"
    """When ``path`` is not set: "kimi"/"qwen3" build (and cache) a randomly initialised tiny MoE;
    "base" is the shipped pretrained tiny base (compact Kimi-K2 template: use ``env.tool_format: kimi_k2``)."""
    seed: int = 0
    """Weight seed of the tiny model."""
    dtype: Literal["float32", "bfloat16"] = "float32"
    """Weight dtype the model is loaded in."""
    device: str = "cpu"
    """Torch device of the model ("cpu", "cuda", "cuda:1", ...)."""
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Chat-template arguments used in deployment ({"enable_thinking": false}, {"reasoning_effort": "low"}...),
    passed to every render of the policy's prompts and to the template preflight."""


class EnvSection(_Section):
    """Where episodes come from and how they are judged."""

    id: str = "toolgym/unitconv-v0"
    """A registered environment id."""
    tool_format: str | None = None
    """How the env parses tool calls (a name in ``toolgym.envs.formats.FORMATS``: "hermes", "kimi_k2",
    "deepseek", "llama3_json", "glm45", "qwen3_coder", "harmony", "mistral", "openai"), or "auto" to
    detect it from ``model.path``'s chat template; must match that template (None: the env's default)."""
    rubric: str | None = None
    """A rubric file (YAML/JSON) or a catalog rubric name; default: the env's catalog rubric."""
    verifiable_only: bool = True
    """Drop critic-sourced criteria (no judge model needed)."""
    task_seed: int = 0
    """Training tasks are drawn from seeds ``task_seed + i`` (i counts every task ever drawn)."""
    heldout_seed: int = 1_000_000
    """Held-out tasks use seeds ``heldout_seed + i``: disjoint from training seeds."""
    heldout_tasks: int = Field(default=0, ge=0)
    """Held-out tasks evaluated greedily (0: no evaluation)."""
    success_threshold: float = Field(default=1.0, ge=0.0, le=1.0)
    """A held-out episode succeeds when its rubric total reaches this."""


class AlgorithmSection(_Section):
    """The RL objective."""

    name: Literal["grpo", "ppo"] = "grpo"
    """grpo: group-relative advantages, no value model (``GRPOTrainer``); ppo: a value model and GAE (``PPOTrainer``)."""
    loss: LossKind = "grpo"
    """Policy loss; PPO always uses the clipped surrogate with GAE advantages ("grpo" or "dapo" aggregation)."""
    group_size: int = Field(default=4, ge=1)
    """K: samples per task (GRPO siblings). GRPO and K2 need K >= 2."""
    clip_low: float = Field(default=0.2, ge=0.0)
    """Lower clip of the ratio π/π_behaviour: ``1 - clip_low``."""
    clip_high: float = Field(default=0.2, ge=0.0)
    """Upper clip; DAPO's clip-higher sets it above ``clip_low`` (e.g. 0.28)."""
    scale_by_std: bool | None = None
    """Divide advantages by the group std (default: on except for dr_grpo)."""
    filter_zero_variance: bool = True
    """Skip groups whose rewards are all equal (they carry no gradient); always counted."""
    kl_beta: float = Field(default=0.0, ge=0.0)
    """Weight of the k3 KL to the frozen initial policy (0: no reference model kept)."""
    k2_tau: float = Field(default=0.1, gt=0.0)
    """tau of the K2 squared loss."""
    dr_grpo_constant: int | None = Field(default=None, ge=1)
    """Dr. GRPO's normalizing length (default: the token budget)."""
    aux_loss_weight: float = Field(default=0.001, ge=0.0)
    """Weight of the MoE router load-balancing loss."""
    gamma: float = Field(default=1.0, ge=0.0, le=1.0)
    """PPO discount per policy token."""
    lam: float = Field(default=0.95, ge=0.0, le=1.0)
    """PPO GAE lambda."""
    value_coef: float = Field(default=0.5, ge=0.0)
    """PPO: weight of the value loss in the total loss."""
    value_clip: float | None = Field(default=None, gt=0.0)
    """PPO: clip each value update to ``V_old ± value_clip`` in the loss (e.g. 0.2; None: unclipped)."""
    value_model: Literal["head", "critic"] | None = None
    """PPO value function: a head on the policy's last hidden state, or a separate critic copy."""
    budget_penalty: float = Field(default=0.5, ge=0.0)
    """Subtracted from the reward of an episode whose sampled tokens exceed its token budget."""
    importance: ImportanceKind = "none"
    """Correction for tokens sampled by another policy version or engine (stale weights in async mode, an
    inference engine that differs from training): "truncated" weights each token by min(π_prox/π_behaviour, C),
    "masked" drops tokens whose ratio leaves [1/C, C]; π_prox is the learner's log-prob before the update."""
    importance_cap: float = Field(default=2.0, gt=1.0)
    """C of the importance correction."""
    routing_replay: bool = False
    """MoE routing replay (R3): generation records each sampled token's experts, the training forward reuses them."""


class OptimSection(_Section):
    """Optimizer and update sizes."""

    kind: Literal["adamw", "muonclip"] = "adamw"
    """AdamW on everything, or MuonClip (Muon on hidden matrices, AdamW on the rest, QK-Clip after each step)."""
    lr: float = Field(default=1e-5, gt=0.0)
    """Peak learning rate."""
    lr_schedule: Schedule = "constant"
    """After warmup, per iteration: hold ``lr`` ("constant"), or decay it to ``lr_final_ratio`` x ``lr`` by
    ``run.iterations`` along a cosine ("cosine") or a line ("linear")."""
    lr_warmup_iterations: int = Field(default=0, ge=0)
    """Iterations of linear warmup: iteration i < warmup trains at (i + 1) / warmup x ``lr``."""
    lr_final_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    """Where the cosine and linear schedules end, as a fraction of ``lr``."""
    weight_decay: float = Field(default=0.0, ge=0.0)
    """Decoupled weight decay of matrices (norms and biases get none)."""
    qk_clip_tau: float | None = Field(default=100.0, gt=0.0)
    """QK-Clip threshold on the max pre-softmax logit, applied after every MuonClip step (None: off;
    ignored by AdamW). K2 uses 100."""
    max_grad_norm: float = Field(default=1.0, gt=0.0)
    """Gradients are clipped to this norm."""
    skip_grad_norm: float = Field(default=1e4, gt=0.0)
    """A pre-clip grad norm above this is an exploding gradient: the step is skipped and counted."""
    minibatch_size: int = Field(default=8, ge=1)
    """Rows per optimizer step."""
    micro_batch_size: int = Field(default=8, ge=1)
    """Rows per forward/backward; minibatch_size / micro_batch_size steps are accumulated."""
    epochs: int = Field(default=1, ge=1)
    """Passes over each iteration's rows."""


class RolloutSection(_Section):
    """Sampling."""

    tasks_per_iteration: int = Field(default=4, ge=1)
    """Tasks drawn per iteration; each is rolled out ``algorithm.group_size`` times."""
    max_new_tokens: int = Field(default=64, ge=1)
    """Per assistant turn."""
    token_budget: int | None = Field(default=None, ge=1)
    """Sampled tokens allowed per episode (a task's ``metadata['token_budget']`` overrides it); None: no budget."""
    temperature: float = Field(default=1.0, ge=0.0)
    """Starting sampling temperature."""
    final_temperature: float | None = Field(default=None, ge=0.0)
    """Temperature reached after ``temperature_decay_iterations`` (linear decay; None: constant)."""
    temperature_decay_iterations: int = Field(default=1, ge=1)
    """Iterations over which the temperature moves from ``temperature`` to ``final_temperature``."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling threshold (1: off)."""
    concurrency: int = Field(default=256, ge=1)
    """Episodes in flight at once during rollouts."""


class PTXSection(_Section):
    """A supervised loss on curated data mixed into RL steps (K2's PTX loss)."""

    weight: float = Field(default=0.0, ge=0.0)
    """0: off."""
    gold_tasks: int = Field(default=0, ge=0)
    """Gold trajectories (scripted replays of the env's gold actions) forming the dataset."""
    dataset: str | None = None
    """A JSONL file of episodes (``toolgym rollout --out``) used instead of gold replays."""
    batch_size: int = Field(default=4, ge=1)
    """Supervised rows per optimizer step."""


class RunSection(_Section):
    """Length, outputs, checkpoints."""

    iterations: int = Field(default=10, ge=1)
    """RL iterations of the run (the LR schedule decays over them)."""
    seed: int = 0
    """Seeds torch, numpy and python's RNG and every sampling seed."""
    out_dir: str = "runs/train"
    """Run folder: config.yaml, metrics.jsonl, checkpoints/, reward.png."""
    checkpoint_every: int = Field(default=1, ge=0)
    """Iterations between checkpoints (0: only the final one)."""
    eval_every: int = Field(default=0, ge=0)
    """Iterations between held-out evaluations (0: only before and after training)."""
    tensorboard: bool = True
    """Also write TensorBoard events under ``<out_dir>/tb`` (when tensorboard is installed)."""
    plots: bool = True
    """Draw ``reward.png`` at the end of the run."""
    torch_threads: int | None = Field(default=None, ge=1)
    """``torch.set_num_threads`` for the run (None: torch's default)."""


PLACEMENT_FIELDS = ("address", "env_actors", "inference_workers", "env_actor_cpus", "inference_cpus", "learner_cpus",
                    "inference_gpus", "learner_gpus", "resources", "engine_urls", "ray_num_cpus", "pool",
                    "inference_threads", "learner_threads")
"""System fields that say where roles run, not what is computed: a run may resume elsewhere."""


class SystemSection(_Section):
    """Where the roles run: env pool, inference workers, learners (``toolgym.trainers.system``)."""

    mode: SystemMode = "inprocess"
    """"inprocess" (one process), "sync" or "async" (roles on Ray, see ``SystemMode``)."""
    pool: Literal["local", "ray"] = "local"
    """Where the envs live: "local" (the driver's process) or "ray" (``env_actors`` EnvActors)."""
    env_actors: int = Field(default=2, ge=1)
    """pool "ray": env actors, each hosting any number of envs."""
    address: str | None = None
    """Ray cluster to join ("auto", "host:port"); None starts Ray locally (``toolgym train --ray-address``)."""
    inference_workers: int = Field(default=2, ge=1)
    """Inference workers (one engine each) serving the current policy."""
    engine: Literal["hf", "openai", "vllm"] = "hf"
    """Inference engine per worker: "hf" (in-process transformers), "openai" (an OpenAI-compatible server
    returning token ids and log-probs: ``toolgym serve``), or "vllm" (a vLLM server from ``make vllm-venv``
    that the worker starts, or attaches to through ``engine_urls``; weights reloaded after each update)."""
    engine_urls: list[str] = Field(default_factory=list)
    """engine "openai" (required) or "vllm" (optional): one base URL per inference worker
    (e.g. "http://127.0.0.1:8000/v1")."""
    learners: int = Field(default=1, ge=1)
    """Data-parallel learners (Ray Train ``TorchTrainer``, DDP-style gradient all-reduce; gloo on CPU)."""
    learner_backend: Literal["local", "ray_train"] = "ray_train"
    """"ray_train": learners are Ray Train workers; "local": one learner in the driver's process (learners: 1)."""
    env_actor_cpus: float = Field(default=0.25, ge=0.0)
    """CPUs Ray reserves per env actor."""
    inference_cpus: float = Field(default=0.5, ge=0.0)
    """CPUs Ray reserves per inference worker."""
    learner_cpus: float = Field(default=0.5, ge=0.0)
    """CPUs Ray reserves per learner."""
    inference_threads: int | None = Field(default=None, ge=1)
    """torch CPU threads in each inference worker (None: ``inference_cpus`` rounded up, at least 1), so each
    role computes on as many cores as Ray reserved for it and the roles do not fight over the same cores."""
    learner_threads: int | None = Field(default=None, ge=1)
    """torch CPU threads in each Ray Train learner (None: ``learner_cpus`` rounded up, at least 1); a
    ``learner_backend: local`` learner runs in the driver with ``run.torch_threads``."""
    inference_gpus: float = Field(default=0.0, ge=0.0)
    """GPUs per inference worker (0 on CPU machines)."""
    inference_dtype: Literal["float32", "bfloat16"] | None = None
    """engine "hf": dtype of each worker's model (None: ``model.dtype``), e.g. "bfloat16" generation for a
    float32 learner, the train-inference mismatch that ``algorithm.routing_replay`` removes for MoE routers."""
    learner_gpus: float = Field(default=0.0, ge=0.0)
    """GPUs per learner (> 0 selects NCCL for the gradient all-reduce)."""
    resources: dict[str, dict[str, float]] = Field(default_factory=dict)
    """Custom Ray resources per role: {"env": {...}, "inference": {...}, "learner": {...}}."""
    max_staleness: int = 0
    """async: a sample may be at most this many policy versions older than the update that trains on it
    (tokens older than that are left out of the loss and counted)."""
    partial_turn_budget: int | None = Field(default=None, ge=1)
    """async: turns an episode may play per iteration before it pauses and resumes under newer weights
    (Kimi partial rollouts); None: episodes finish within their iteration."""
    fork_siblings: bool = True
    """The K siblings of a task start from one reset: the first resets, the others restore its snapshot."""
    ray_num_cpus: int | None = Field(default=None, ge=1)
    """CPUs of a locally started Ray (None: the machine's); ignored when joining ``address``."""


class CriticSection(_Section):
    """The closed-loop critic (``toolgym.trainers.critic_loop``): checked against verified outcomes, optionally trained."""

    outcome: str | None = None
    """Id of the verifiable rubric criterion taken as truth (None: the critic loop is off)."""
    critic: Literal["given", "self_pairwise"] = "given"
    """Who judges critic criteria: "given" (the critics passed to the trainer) or "self_pairwise" (the policy
    under training, registered under ``critic.name``: a ``PairwiseCritic``, or with verdict "label" a ``LabelPairwiseCritic``)."""
    name: str = "self"
    """critic "self_pairwise": the critic name the rubric's critic criteria refer to."""
    threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    """An outcome value >= threshold is a success."""
    train_critic: bool = False
    """Mix critic prompts from verified pairs into the RL batch (self-critique: one model learns both roles)."""
    mix_fraction: float = Field(default=0.25, gt=0.0, lt=1.0)
    """train_critic: the share of the batch's episodes that are critic samples (capped by the verified pairs)."""
    agree_reward: float = Field(default=1.0, gt=0.0)
    """Reward of a critic sample that agrees with the verified preference (disagreeing: 0; unparseable: dropped)."""
    max_new_tokens: int = Field(default=64, ge=1)
    """train_critic: tokens a critic sample may generate."""
    verdict: Literal["json", "label"] = "json"
    """train_critic: how the trained critic answers. "json": a sampled ``PairwiseCritic`` JSON verdict (LLM judges);
    "label": one token, read from the log-probabilities of "A" and "B" after a fixed prefix (always parses; for small models)."""
    label_prompt: Literal["full", "compact"] = "full"
    """verdict "label": what the critic reads. "full": system prompt, rubric, criterion, task and both
    responses (~335 tokens for two short UnitConv responses); "compact": the criterion and the two
    responses only (~100): a third of the cost per verdict, and on the tiny MoE the difference between
    learning the judgement and memorising the training pairs (``benchmarks/critic_objective.py``).
    For criteria that need neither the task nor the rubric's name."""
    label_advantage: Literal["constant", "miss", "pair"] = "constant"
    """verdict "label": the advantages of a prompt's two label rows. "constant": +/- the group-relative
    advantage of rewards (agree_reward, 0), the same for every prompt, so a label preference shared by
    both A/B orders gets no gradient; "miss": the winner's label gets agree_reward * (1 - p(winner)) and
    the other label the negative, so the update is the gradient of log p(winner) (a logistic loss) and
    corrects that preference; "pair": both orders of a pair get agree_reward * (1 - p) and its negative, with
    p the pair's both-order verdict, so the update is a logistic loss on that verdict: a label or position
    preference cancels out of it and gets no gradient (``toolgym.trainers.critic_loop.label_advantages``)."""
    loss_weight: float = Field(default=1.0, gt=0.0)
    """train_critic: every critic row's advantage is multiplied by this (the critic's share of the loss)."""
    extra_updates: int = Field(default=0, ge=0)
    """verdict "label": critic-only updates after each joint update, each on the iteration's verified pairs
    with verdicts (behaviour log-probs, advantages) read afresh from the updated model."""
    replay_pairs: int = Field(default=0, ge=0)
    """train_critic: verified pairs of past iterations added to each iteration's critic rows, drawn at random
    from the last ``replay_size`` kept. Their verdicts are asked of the current model like fresh ones, so the
    rows stay on-policy; the critic then fits a growing set instead of memorising each iteration's few pairs."""
    replay_size: int = Field(default=512, ge=1)
    """replay_pairs: how many past verified pairs are kept (oldest dropped first)."""
    reweight: bool = False
    """Re-fit the weights of the rubric's critic criteria every iteration from the running calibration
    (non-negative least squares against the outcome over the last ``reweight_window`` scores); their total weight is kept."""
    reweight_window: int = Field(default=256, ge=4)
    """reweight: how many recent scores the running calibration fits on."""


class TrainConfig(_Section):
    """A whole training run. Every section has defaults; YAML files name only what they change."""

    model: ModelSection = Field(default_factory=ModelSection)
    env: EnvSection = Field(default_factory=EnvSection)
    algorithm: AlgorithmSection = Field(default_factory=AlgorithmSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    rollout: RolloutSection = Field(default_factory=RolloutSection)
    ptx: PTXSection = Field(default_factory=PTXSection)
    run: RunSection = Field(default_factory=RunSection)
    system: SystemSection = Field(default_factory=SystemSection)
    critic: CriticSection = Field(default_factory=CriticSection)

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        for problem in _contradictions(self):
            raise ConfigError(problem)
        return self

    # ------------------------------------------------------------------ derived values

    @property
    def scale_by_std(self) -> bool:
        """Whether group advantages are divided by the group std."""
        if self.algorithm.scale_by_std is not None:
            return self.algorithm.scale_by_std
        return self.algorithm.loss != "dr_grpo"

    def lr_factor_at(self, iteration: int) -> float:
        """Multiplier of ``optim.lr`` at ``iteration`` (0-based): warmup, then the schedule over ``run.iterations``."""
        o = self.optim
        return lr_factor(iteration, o.lr_warmup_iterations, iteration / self.run.iterations, o.lr_schedule, o.lr_final_ratio)

    def temperature_at(self, iteration: int) -> float:
        """Sampling temperature of ``iteration`` (0-based): linear decay, then constant."""
        r = self.rollout
        if r.final_temperature is None:
            return r.temperature
        frac = min(1.0, iteration / r.temperature_decay_iterations)
        return r.temperature + (r.final_temperature - r.temperature) * frac

    def fingerprint(self) -> str:
        """Hash of every field that changes what training computes (not its length or outputs).

        ``run.iterations``, ``run.out_dir``, checkpoint/eval cadence and output switches may
        change on resume; everything else must match the checkpoint's config.
        """
        data = self.model_dump(mode="json")
        for key in ("iterations", "out_dir", "checkpoint_every", "eval_every", "tensorboard", "plots", "torch_threads"):
            data["run"].pop(key)
        for key in PLACEMENT_FIELDS:  # where roles run changes no result
            data["system"].pop(key)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ files

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "config") -> TrainConfig:
        """Validate a dict; errors become one ``ConfigError`` naming each bad field and its fix."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of sections (model, env, algorithm, ...), got {type(data).__name__}")
        _check_unknown(cls, data, source)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"{source}: " + "; ".join(_describe(e) for e in exc.errors())) from None

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> TrainConfig:
        """Load a YAML config file."""
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file {str(file)!r} does not exist; see examples/configs/grpo_tiny.yaml")
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from None
        return cls.from_dict(data, source=str(file))

    def to_yaml(self, path: str | os.PathLike[str]) -> Path:
        """Write the full config (every field, defaults included)."""
        file = Path(path)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
        return file


def _contradictions(cfg: TrainConfig) -> list[str]:
    """Combinations that validate field by field but cannot run, each with its fix."""
    a, o, p = cfg.algorithm, cfg.optim, cfg.ptx
    out = []
    if a.name == "ppo" and a.value_model is None:
        out.append("algorithm.value_model is required for PPO: set it to 'head' (value head on the policy) or 'critic' (separate model)")
    if a.name == "grpo" and a.value_model is not None:
        out.append(f"algorithm.value_model={a.value_model!r} is unused by GRPO: remove it or set algorithm.name: ppo")
    if a.name == "grpo" and a.value_clip is not None:
        out.append(f"algorithm.value_clip={a.value_clip} is unused by GRPO (no value model): remove it or set algorithm.name: ppo")
    if a.name == "grpo" and a.group_size < 2:
        out.append("algorithm.group_size must be >= 2 for GRPO (advantages compare siblings of one task): set it to 4 or more")
    if a.loss == "k2" and a.group_size < 2:
        out.append("algorithm.group_size must be >= 2 for the k2 loss (its baseline is the group's mean reward)")
    if a.name == "ppo" and a.loss in ("k2", "dr_grpo"):
        out.append(f"algorithm.loss={a.loss!r} is a group objective; PPO uses 'grpo' (per-sequence mean) or 'dapo' (token mean)")
    if a.loss == "dapo" and a.clip_high < a.clip_low:
        out.append(f"algorithm.clip_high ({a.clip_high}) is below clip_low ({a.clip_low}); DAPO's clip-higher needs clip_high >= clip_low")
    if o.minibatch_size % o.micro_batch_size:
        out.append(f"optim.minibatch_size ({o.minibatch_size}) must be a multiple of optim.micro_batch_size ({o.micro_batch_size})")
    if p.weight > 0 and not p.gold_tasks and not p.dataset:
        out.append("ptx.weight > 0 needs data: set ptx.gold_tasks (gold replays) or ptx.dataset (an episodes JSONL)")
    if p.gold_tasks and p.dataset:
        out.append("ptx.gold_tasks and ptx.dataset are both set; choose one source for the PTX data")
    if cfg.model.path is None and cfg.model.tiny is None:
        out.append("model.path or model.tiny is required: a model folder, or 'kimi'/'qwen3' for a tiny MoE")
    if a.importance != "none" and a.loss == "k2":
        out.append(f"algorithm.importance={a.importance!r} corrects a per-token ratio; the k2 loss has none: "
                   "set algorithm.importance: none or use loss grpo/dapo/dr_grpo")
    if a.routing_replay and a.name == "ppo":
        out.append("algorithm.routing_replay is not wired into the PPO trainer (its forward would route freely): "
                   "set algorithm.name: grpo, or algorithm.routing_replay: false")
    c = cfg.critic
    if (c.train_critic or c.critic != "given" or c.reweight) and c.outcome is None:
        out.append("critic.train_critic / critic.critic / critic.reweight need verified outcomes: set critic.outcome to the id of a "
                   "verifiable (check) criterion of the rubric")
    if c.outcome is not None and a.name != "grpo":
        out.append("critic.outcome: the closed-loop critic runs in the GRPO trainer only (critic groups join a GRPO batch): "
                   "set algorithm.name: grpo or remove the critic section")
    if c.outcome is not None and cfg.system.mode != "inprocess":
        out.append(f"critic.outcome is read by the in-process GRPO trainer only: set system.mode: inprocess "
                   f"(got {cfg.system.mode!r}) or remove critic.outcome")
    if (c.extra_updates or c.label_advantage != "constant" or c.label_prompt != "full") and c.verdict != "label":
        out.append("critic.extra_updates / critic.label_advantage / critic.label_prompt act on label verdicts: set "
                   "critic.verdict: label, or leave them at their defaults (0, 'constant', 'full')")
    if c.train_critic and a.routing_replay:
        out.append("critic.train_critic samples carry no routing records: set algorithm.routing_replay: false or critic.train_critic: false")
    return out + _system_contradictions(cfg)


def _system_contradictions(cfg: TrainConfig) -> list[str]:
    """Placement and staleness settings that cannot run, each with its fix."""
    s, o = cfg.system, cfg.optim
    out = []
    if s.max_staleness < 0:
        out.append(f"system.max_staleness must be >= 0 (versions a sample may lag the update), got {s.max_staleness}: "
                   "use 0 for on-policy or 1-2 for async")
    if s.mode != "async" and s.max_staleness > 0:
        out.append(f"system.max_staleness={s.max_staleness} needs system.mode: async (sync modes are on-policy)")
    if s.mode != "async" and s.partial_turn_budget is not None:
        out.append("system.partial_turn_budget (partial rollouts) needs system.mode: async")
    if s.mode == "inprocess" and (s.learners > 1 or s.engine != "hf"):
        out.append(f"system.learners > 1 and system.engine: {s.engine} need system.mode: sync or async (roles on Ray)")
    if s.learners > 1:
        rows_per_rank, rem = divmod(o.minibatch_size, s.learners)
        if rem or rows_per_rank % o.micro_batch_size:
            out.append(f"system.learners ({s.learners}) must divide optim.minibatch_size ({o.minibatch_size}) into "
                       f"whole micro-batches of optim.micro_batch_size ({o.micro_batch_size}): e.g. minibatch_size "
                       f"{s.learners * o.micro_batch_size} or learners 1")
        if s.learner_backend == "local":
            out.append("system.learner_backend: local runs one learner; set learners: 1 or learner_backend: ray_train")
    if (s.engine == "openai" or (s.engine == "vllm" and s.engine_urls)) and len(s.engine_urls) != s.inference_workers:
        out.append(f"system.engine: {s.engine} needs one URL per inference worker in system.engine_urls "
                   f"({s.inference_workers} workers, {len(s.engine_urls)} URLs)")
    if s.mode != "inprocess" and cfg.algorithm.routing_replay and s.engine == "vllm":
        out.append("algorithm.routing_replay needs each sampled token's routed experts, which a vLLM server does not "
                   "report: set system.engine: hf (or openai with a toolgym serve that records routing), or "
                   "algorithm.routing_replay: false")
    unknown = set(s.resources) - {"env", "inference", "learner"}
    if unknown:
        out.append(f"system.resources: unknown role(s) {sorted(unknown)}; roles are env, inference, learner")
    return out


def _check_unknown(model: type[BaseModel], data: dict, where: str) -> None:
    """Refuse unknown keys, recursively, with a suggestion (pydantic's message has none)."""
    for key, value in data.items():
        if key not in model.model_fields:
            raise ConfigError(
                f"{where}: unknown field {key!r}.{did_you_mean(str(key), model.model_fields)} "
                f"Known fields: {', '.join(model.model_fields)}."
            )
        annotation = model.model_fields[key].annotation
        if isinstance(value, dict) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            _check_unknown(annotation, value, f"{where}: {key}")


def _describe(error: Any) -> str:
    if not error["loc"]:  # a whole-config contradiction: its message names the fields itself
        return str(error["msg"]).removeprefix("Value error, ")
    field = ".".join(str(p) for p in error["loc"])
    return f"{field}: {error['msg']} (got {error.get('input')!r})"


def _detected_format(config: TrainConfig) -> str:
    """``env.tool_format: auto``: the format ``model.path``'s chat template teaches."""
    if config.model.path is None:
        raise ConfigError("env.tool_format: 'auto' reads the chat template of model.path, which is not set; "
                          "name the format instead (e.g. env.tool_format: kimi_k2 for the tiny models)")
    return detect_format(chat_template_of(config.model.path))


def env_source(config: TrainConfig) -> Any:
    """The env id, or a factory when a tool format is configured."""
    env_id, tool_format = config.env.id, config.env.tool_format
    if tool_format == "auto":
        tool_format = _detected_format(config)
    if tool_format is None:
        make(env_id).close()  # fail now, with suggestions, on an unknown id
        return env_id
    make(env_id, tool_format=tool_format).close()  # fail now on an unknown id or format

    def factory() -> Any:
        return make(env_id, tool_format=tool_format)

    factory.__name__ = env_id
    return factory


def load_rubric_for(config: TrainConfig) -> Any:
    """The run's rubric: ``env.rubric`` (a file or a catalog name) or the env's catalog rubric."""
    name = config.env.rubric
    if name is None:
        rubric = rubric_for(config.env.id)
    elif Path(name).suffix in (".yaml", ".yml", ".json"):
        rubric = load_rubric(Path(name))
    else:
        rubric = catalog_rubric_by_name(name)
    return rubric.verifiable() if config.env.verifiable_only else rubric
