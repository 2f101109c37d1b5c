// Package fleetsim simulates a small fleet of LLM inference replicas closely enough that servescope's
// receivers, normalizer and connectors can be tested against it without a GPU.
//
// Each replica runs a continuous-batching engine in virtual time: requests arrive per tenant (Poisson, with
// rates the scenario changes over time), wait in an admission queue, are scheduled under a token budget with
// chunked prefill, hold blocks of a paged KV cache that keeps the blocks of finished requests for prefix
// reuse (least recently used first out), are preempted and recomputed when the cache runs out, and advance
// one token per step, where a step's duration follows from the batch (a roofline over compute and memory
// traffic, slowed by GPU clock throttling and by a tensor-parallel straggler).
//
// Every replica serves its engine's real wire formats (vLLM, SGLang, trtllm-serve, llama.cpp) and a
// dcgm-exporter endpoint for its node's GPUs, and every finished request becomes spans in its engine's shape
// under a gateway span that carries the tenant. Scenarios inject known faults; for every request the
// simulator writes a ground-truth record whose cause is measured from what the request went through (time
// queued and why, time lost to preemption, prefix tokens it did not find cached, step time lost to throttled
// clocks or to a straggler rank), not taken from the scenario's name. Optionally (Config.NCCLDir) the ranks of
// tensor-parallel replicas write NCCL Inspector records, one coarse all-reduce per step whose timestamps show
// a straggler arriving late (nccl.go).
//
// Time is virtual and deterministic for a seed: Advance steps it as fast as the CPU allows (tests), and
// RunRealtime ties it to the wall clock while the HTTP endpoints serve (demo, end-to-end tests).
package fleetsim
