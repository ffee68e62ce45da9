// The trace switch: ANYKVM_TRACE=insn,exits (comma list; "regs" adds the
// general registers to each instruction line) and ANYKVM_TRACE_FILE=path
// (default stderr). Read once per process. When no instruction trace is on the
// engine loop pays one predictable branch per block.
//
// ANYKVM_STATS=1 (or =path, appended to) prints, when the process exits, each
// vCPU's executed instructions, blocks and exits by reason, its thread's CPU
// time and the rate (instructions per CPU second); `make bench` reads it. The
// counters always run: one add per block (stats_add), exits counted in
// trace_exit, which the loop calls on every exit while ANYKVM_STATS is set.
// Instructions are counted per block entered, by the block's length: a block
// left early (fault, exit) counts whole, single-stepped instructions not at all.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstdio>

#include "base/types.h"

#include "cpu/backend.h"
#include "x86/decode/insn.h"

namespace anykvm::soft {
class Cpu;

struct TraceConfig {
  bool insn = false;
  bool regs = false;
  bool exits = false;        // call trace_exit on every exit (exit trace or stats)
  bool print_exits = false;  // ANYKVM_TRACE=exits: one line per exit
  bool stats = false;        // ANYKVM_STATS: counters printed at process exit
  FILE* out = nullptr;
};
const TraceConfig& trace_config();

// Per-vCPU counters, one cache line each so vCPU threads do not share lines.
// Written by the vCPU's thread only (relaxed load + store: a plain add), read
// at process exit.
struct alignas(64) VcpuStats {
  static constexpr unsigned k_exit_reasons = 9;
  std::atomic<uint64_t> insns{0};
  std::atomic<uint64_t> blocks{0};
  std::atomic<uint64_t> exits[k_exit_reasons] = {};
  std::atomic<int> tid{0};  // the vCPU thread, for its CPU time
  std::atomic<bool> used{false};
};
constexpr unsigned k_stats_vcpus = 64;  // vCPU ids beyond share slots (id % 64)
extern VcpuStats g_vcpu_stats[k_stats_vcpus];

// `blocks` blocks of `insns` decoded instructions in all ran. The engine loop
// counts in locals and adds them here when it leaves the loop or takes its
// slow path (event polling), so the per-block cost is two register adds.
inline void stats_add(VcpuId id, uint64_t insns, uint64_t blocks) {
  VcpuStats& s = g_vcpu_stats[id.raw() % k_stats_vcpus];
  s.insns.store(s.insns.load(std::memory_order_relaxed) + insns, std::memory_order_relaxed);
  s.blocks.store(s.blocks.load(std::memory_order_relaxed) + blocks, std::memory_order_relaxed);
}

// One executed instruction: CS:EIP, bytes, Intel-syntax disassembly.
void trace_insn(Cpu& c, const x86::Insn& in);
void trace_exit(const Cpu& c, const cpu::VcpuExit& e);
}  // namespace anykvm::soft
