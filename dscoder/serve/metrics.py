"""Prometheus metrics of the engine, in a registry of its own (several engines can live in one process).

Names follow vLLM's where one exists (`time_to_first_token_seconds`, ...) under a `dscoder_`
prefix, so existing dashboards need only the prefix changed.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 60)


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.ttft = Histogram("dscoder_time_to_first_token_seconds", "Arrival to first generated token",
                              buckets=_LATENCY, registry=r)
        self.itl = Histogram("dscoder_inter_token_latency_seconds", "Time between a request's consecutive tokens",
                             buckets=_LATENCY, registry=r)
        self.e2e = Histogram("dscoder_e2e_request_latency_seconds", "Arrival to the end of a request",
                             buckets=_LATENCY, registry=r)
        self.queued = Gauge("dscoder_num_requests_waiting", "Requests accepted but not yet admitted", registry=r)
        self.running = Gauge("dscoder_num_requests_running", "Sequences in the running batch", registry=r)
        self.blocks_used = Gauge("dscoder_kv_blocks_used", "KV cache blocks owned by running sequences", registry=r)
        self.blocks_total = Gauge("dscoder_kv_blocks_total", "KV cache blocks in the pool", registry=r)
        self.prefix_hit_rate = Gauge("dscoder_prefix_cache_hit_rate",
                                     "Share of prompt tokens found in the prefix cache, since start", registry=r)
        self.rejections = Counter("dscoder_request_rejections", "Requests refused because the queue was full",
                                  registry=r)
        self.queue_timeouts = Counter("dscoder_request_queue_timeouts",
                                      "Requests refused (503) after waiting longer than --queue-timeout", registry=r)
        self.preemptions = Counter("dscoder_preemptions", "Sequences preempted (recomputed later) for lack of blocks",
                                   registry=r)
        self.generated_tokens = Counter("dscoder_generation_tokens", "Tokens generated", registry=r)
        self.finished = Counter("dscoder_request_finished", "Finished requests by reason", ["finish_reason"],
                                registry=r)

    def observe(self, stats) -> None:
        """Refresh the gauges from the engine's `Stats` after a step."""
        self.running.set(stats.running)
        self.blocks_used.set(stats.blocks_used)
        self.prefix_hit_rate.set(stats.prefix_hit_rate)

    def render(self) -> bytes:
        return generate_latest(self.registry)
