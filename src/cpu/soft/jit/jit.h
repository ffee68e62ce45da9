// The block compiler (DESIGN.md "Speed is designed in"): a hot decoded Block
// of 32-bit code becomes x86-64 host code. Common integer instructions run as
// the same host instruction on the guest's registers (which stay in Cpu::gpr)
// and on guest memory through an inline software-TLB lookup; the guest's
// arithmetic flags live in the host's RFLAGS between such instructions and are
// written back to Cpu::lf (materialized) before anything else reads them.
// Every other instruction, and every slow path of a compiled one (TLB miss,
// segment limit, MMIO, a page holding code), calls the instruction's handler
// with CS:EIP and the flags exactly as the interpreter would have them, so a
// compiled block and run_block (soft_vcpu.cpp) have the same observable
// behaviour, faults and exits included: faults thrown by handlers unwind
// through the generated code (its frame is described to the unwinder).
//
// Code lives in a per-vCPU arena of RWX memory; when it fills, every block's
// code is dropped and the arena restarts (the engine recompiles what is hot).
// ANYKVM_JIT=0 turns the compiler off; ANYKVM_JIT_THRESHOLD=N compiles a block
// when it starts for the Nth time (0 and 1: the first time); ANYKVM_JIT_ARENA
// sets the arena's size in bytes (tests make it small to exercise resets);
// ANYKVM_JIT_PERFMAP=1 writes /tmp/perf-<pid>.map, so `perf report` names
// compiled code by the guest-physical address of its block, and a listing of
// each block's instructions (=2: with its host code in hex, for objdump).
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace anykvm::x86 {
struct Insn;
}

namespace anykvm::soft {
class Cpu;

namespace jit {

struct Config {
  bool enabled = true;
  uint32_t threshold = 4;
  size_t arena_size = size_t(32) << 20;  // per vCPU (ANYKVM_JIT_ARENA, bytes)
  int perf_map = 0;  // 1: perf map and listing; 2: the listing also has each block's host code
};
// From the environment, read at each vCPU's creation.
Config config();
// Blocks compiled by this process so far (tests check the compiler ran).
uint64_t blocks_compiled();
uint64_t arena_resets();

// Prepended to each block's code: what the code assumes on entry.
struct CodeHeader {
  uint8_t seg_read = 0;   // segments read through the inline path (bit per cpu::SegReg)
  uint8_t seg_write = 0;  // segments written through it
  uint8_t seg_flat = 0;   // ... of these assumed to have base 0 and limit 4 GiB
  bool stack32 = false;   // assumes SS.B = 1 (PUSH/POP)
  uint8_t pad[4] = {};
  const uint8_t* code = nullptr;
};

// What the generated dispatcher reads to go from one compiled block to the
// next without returning to the engine loop (soft_vcpu.cpp fills it; the
// pointers are to the vCPU's own state, so they stay valid). It chains only
// when the loop would do nothing but look up the next block: no stop flag,
// interrupt, memory-map change, cross-vCPU request or freed block pending, no
// interrupt shadow or debug condition, and the next block's chain entry
// (made when the loop ran it) still holds: same code address and TLB
// mapping, no block invalidated and no revalidation due since. Each block
// end also keeps a link (a copy of the entry it last went through), taken
// without those checks while Tlb::link_gen, which every TLB flush, block
// invalidation and revalidation epoch bumps, is what it was then.
struct ChainState {
  uint8_t allowed = 0;  // this KVM_RUN may chain (no instruction trace, no interrupt-window request)
  uint8_t dead = 0;     // blocks wait to be freed at the next boundary
  uint8_t pad[6] = {};
  const volatile uint8_t* immediate_exit = nullptr;
  const std::atomic<bool>* kick = nullptr;
  const std::atomic<bool>* irq_attention = nullptr;
  const std::atomic<bool>* q_pending = nullptr;
  const std::atomic<uint64_t>* generation = nullptr;  // the memory map's
  const uint64_t* mem_generation = nullptr;           // the one the TLB was synced to
  const uint64_t* inval = nullptr;
  const uint32_t* epoch = nullptr;
  const uint64_t* link_gen = nullptr;  // Tlb::link_gen
  bool* block_stop = nullptr;
  const void* tlb_sets = nullptr;
  uint64_t insns = 0, blocks = 0;  // blocks entered by chaining (ANYKVM_STATS)
  uint64_t cur_tag = 0;  // the running compiled block's chain tag
  uint32_t entry_eip = 0;  // ... and the EIP it was entered at
};

class Arena;
// nullptr when the host cannot run generated code (no executable mapping).
// The dispatcher is generated for `c`'s layout.
std::unique_ptr<Arena, void (*)(Arena*)> make_arena(size_t size, const Cpu& c);
ChainState& chain_state(Arena& a);
// The block with `code` starting at linear address `lin` (tag as chain_tag in
// soft_vcpu.cpp: lin | CPL 3 << 32 | code32 << 33), at guest-physical `gpa`,
// validated in the current epoch, may be entered by chaining.
void remember(Arena& a, uint64_t tag, uint64_t gpa, const CodeHeader& h, uint32_t n);

// Compile the n instructions of a block of 32-bit code starting at `insns`.
// Returns an arena offset (> 0), or 0 when the arena is full (then `full` is
// set: reset and retry) or the code cannot be placed.
// `gpa`: the block's first byte, for ANYKVM_JIT_PERFMAP.
uint32_t compile(Arena& a, const Cpu& c, const x86::Insn* insns, uint32_t n, uint64_t gpa, bool& full);
void reset(Arena& a);
const CodeHeader& header(const Arena& a, uint32_t off);
// Run compiled code with CS:EIP at the block's first instruction. Returns
// with CS:EIP and Cpu::lf written back (handler exceptions propagate), or
// false at once when the state does not meet what the code assumes (a
// segment it uses is unusable, of another type or no longer flat, long
// mode, SS.B = 0 for PUSH/POP): then run the block in the interpreter.
bool enter(Arena& a, Cpu& c, const CodeHeader& h);

}  // namespace jit
}  // namespace anykvm::soft
