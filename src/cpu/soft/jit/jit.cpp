// The block compiler (jit.h). Register use in generated code:
//   rbx  Cpu*                         r12  the TLB set of the current CPL
//   r14  ChainState*                   r15  saved guest flags (LAHF/SETO form)
//   rax rcx rdx rsi  scratch (rdx+rsi: host address of a memory operand)
//   rbp rdi r8 r9 r10 r11 r13  guest registers (Compiler::RegCache)
// EIP is not updated per instruction: instruction k of the block is at the
// entry EIP (ChainState::entry_eip) + its offset (mod 2^32), written to
// Cpu::rip before anything that can read it (a handler, a fault, the end).
#include "cpu/soft/jit/jit.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <mutex>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <vector>

#include "cpu/soft/cpu.h"
#include "cpu/soft/dispatch.h"
#include "cpu/soft/jit/x64asm.h"
#include "cpu/soft/mmu/tlb.h"
#include "x86/decode/disasm.h"
#include "x86/decode/insn.h"

extern "C" void __register_frame(void*);
extern "C" void __deregister_frame(void*);

namespace anykvm::soft {
bool host_shifts_ignore_flags_in();  // exec/bits.cpp
}

namespace anykvm::soft::jit {
namespace {

constexpr uint32_t k_arith = 0x8d5;  // OSZAPC

// ---- host facts probed once ----
bool host_logic_clears_af() {
  unsigned long f;
  __asm__ volatile(
      "mov $0x0f, %%al\n\t"
      "add $1, %%al\n\t"  // AF = 1
      "and %%eax, %%eax\n\t"
      "pushfq\n\t"
      "pop %0"
      : "=r"(f)
      :
      : "rax", "cc");
  return !(f & 0x10);
}

}  // namespace

Config config() {
  Config c;
  if (const char* v = std::getenv("ANYKVM_JIT")) c.enabled = std::strcmp(v, "0") != 0;
  if (const char* v = std::getenv("ANYKVM_JIT_THRESHOLD")) c.threshold = uint32_t(std::strtoul(v, nullptr, 10));
  if (const char* v = std::getenv("ANYKVM_JIT_ARENA")) c.arena_size = std::strtoul(v, nullptr, 10);
  if (const char* v = std::getenv("ANYKVM_JIT_PERFMAP")) c.perf_map = std::atoi(v);
  return c;
}

namespace {
std::atomic<uint64_t> g_compiled{0};
}
uint64_t blocks_compiled() { return g_compiled.load(std::memory_order_relaxed); }
namespace {
std::atomic<uint64_t> g_resets{0};
}
uint64_t arena_resets() { return g_resets.load(std::memory_order_relaxed); }

// ---- the arena: trampoline, unwind description, code ----
class Arena {
 public:
  uint8_t* base = nullptr;
  size_t size = 0;
  size_t used = 0;
  size_t code_start = 0;
  size_t links_low = 0;  // the link area: [links_low, size)
  uint64_t exit_addr = 0;  // leave: the block ran (eax = 0)
  uint64_t dispatch_addr = 0;  // a block's normal end: chain to the next, or leave
  uint64_t dispatch_slot_addr = 0;  // the same with r8 = the end's own ChainEntry (its link)
  uint64_t dispatch_lean_addr = 0;  // ... for the end of a block that called no handler but its slow paths
  uint64_t dispatch_static_addr = 0;  // ... and whose target is at a fixed offset from the block
  uint64_t bail_addr = 0;  // leave: its entry assumptions do not hold (eax = 1)
  using EnterFn = int (*)(Cpu*, const uint8_t*, const void*, ChainState*);
  ChainState chain;
  struct ChainEntry {
    uint64_t tag = ~uint64_t(0);
    uint64_t gpa = 0;
    const uint8_t* code = nullptr;
    uint64_t inval = 0;
    uint32_t epoch = 0;
    uint32_t n = 0;
    uint64_t link_gen = 0;  // a link's: the TLB's link_gen when it was checked
    uint64_t src_tag = 0;   // a link's: the tag of the block it was made from
    uint64_t pad = 0;
  };
  static constexpr size_t k_chain_entries = 16384;
  std::vector<ChainEntry> table = std::vector<ChainEntry>(k_chain_entries);
  // Every bit of the page offset counts: blocks start at any byte (a loop
  // "inc eax; cmp [eax], 0; jnz" entered one byte further has its own block).
  static size_t chain_index(uint64_t lin) { return (lin ^ (lin >> 12)) & (k_chain_entries - 1); }
  EnterFn enter_fn = nullptr;
  std::vector<uint8_t> eh;  // registered .eh_frame image (CIE, one FDE, terminator)
  bool registered = false;
  int perf_map = 0;

  ~Arena() {
    if (registered) __deregister_frame(eh.data());
    if (base) munmap(base, size);
  }
};

namespace {

void uleb(std::vector<uint8_t>& v, uint64_t x) {
  do {
    uint8_t b = x & 0x7f;
    x >>= 7;
    if (x) b |= 0x80;
    v.push_back(b);
  } while (x);
}
void put32(std::vector<uint8_t>& v, size_t at, uint32_t x) { std::memcpy(&v[at], &x, 4); }
void app32(std::vector<uint8_t>& v, uint32_t x) {
  v.resize(v.size() + 4);
  put32(v, v.size() - 4, x);
}
void app64(std::vector<uint8_t>& v, uint64_t x) {
  v.resize(v.size() + 8);
  std::memcpy(&v[v.size() - 8], &x, 8);
}

// The frame every piece of generated code runs in (after the trampoline's
// prologue): CFA = rsp + 64, return address at CFA-8, then rbp rbx r12 r13
// r14 r15 (DWARF registers 6 3 12 13 14 15).
std::vector<uint8_t> make_eh_frame(uint64_t pc, uint64_t len) {
  std::vector<uint8_t> v;
  // CIE
  const size_t cie = v.size();
  app32(v, 0);  // length, patched
  app32(v, 0);  // CIE id
  v.push_back(1);  // version
  v.push_back('z');
  v.push_back('R');
  v.push_back(0);
  uleb(v, 1);        // code alignment
  v.push_back(0x78); // data alignment -8 (sleb)
  uleb(v, 16);       // return address column
  uleb(v, 1);        // augmentation data length
  v.push_back(0x00); // FDE pointers: absolute
  v.push_back(0x0c); // DW_CFA_def_cfa rsp, 64
  uleb(v, 7);
  uleb(v, 64);
  const uint8_t regs[][2] = {{16, 1}, {6, 2}, {3, 3}, {12, 4}, {13, 5}, {14, 6}, {15, 7}};
  for (auto& r : regs) {
    v.push_back(uint8_t(0x80 | r[0]));  // DW_CFA_offset
    uleb(v, r[1]);
  }
  while ((v.size() - cie) % 8) v.push_back(0);  // DW_CFA_nop
  put32(v, cie, uint32_t(v.size() - cie - 4));
  // FDE
  const size_t fde = v.size();
  app32(v, 0);
  app32(v, uint32_t(v.size() - cie));  // CIE pointer: distance back to the CIE
  app64(v, pc);
  app64(v, len);
  uleb(v, 0);  // augmentation data length
  while ((v.size() - fde) % 8) v.push_back(0);
  put32(v, fde, uint32_t(v.size() - fde - 4));
  app32(v, 0);  // terminator
  return v;
}

struct Offsets {
  int32_t gpr, rip, lf_op, lf_flags, seg, exit_pending, mmio_count, priv, block_stop, efer;
};

template <typename A, typename B>
int32_t off_of(const A& base, const B& field) {
  return int32_t(reinterpret_cast<const char*>(&field) - reinterpret_cast<const char*>(&base));
}

}  // namespace

// Cpu::Private's block_stop offset (soft_vcpu.cpp owns the type).
int32_t private_block_stop_offset(const Cpu& c);

void emit_dispatcher(Asm& s, const Cpu& c, const Arena& ar, Asm::Label& exit, size_t& slot_at, size_t& lean_at,
                     size_t& static_at);
namespace {
void perf_map_add(const void* start, size_t size, const char* what, uint64_t gpa);
}

std::unique_ptr<Arena, void (*)(Arena*)> make_arena(size_t size, const Cpu& c) {
  std::unique_ptr<Arena, void (*)(Arena*)> none(nullptr, [](Arena* a) { delete a; });
  size = std::max<size_t>(size, 4096);
  void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return none;
  std::unique_ptr<Arena, void (*)(Arena*)> a(new Arena, [](Arena* p) { delete p; });
  a->base = static_cast<uint8_t*>(m);
  a->size = size;
  Asm s;
  // bail / exit: the status, then undo the prologue.
  Asm::Label epilogue;
  const size_t bail_at = s.size();
  s.mov_imm32(RAX, 1);
  s.jmp(epilogue);
  const size_t exit_at = s.size();
  Asm::Label exit_l;
  s.bind(exit_l);
  s.alu_rr(6, 4, RAX, RAX);
  s.bind(epilogue);
  s.alu_imm(0, 8, RSP, 8);
  for (uint8_t r : {R15, R14, R13, R12, RBX, RBP}) s.pop(r);
  s.ret();
  // enter(Cpu* rdi, code rsi, tlb set rdx)
  const size_t enter_at = s.size();
  for (uint8_t r : {RBP, RBX, R12, R13, R14, R15}) s.push(r);
  s.alu_imm(5, 8, RSP, 8);
  const size_t body_at = s.size();
  s.mov_rr(8, RBX, RDI);
  s.mov_rr(8, R12, RDX);
  s.mov_rr(8, R14, RCX);
  // rip offset: computed from a Cpu layout probe below (patched in by the caller of make_arena is
  // not possible: the trampoline loads it from the code's first instruction instead), so the
  // block code itself loads r13 (see Compiler::prologue).
  s.jmp_r(RSI);
  while (s.size() % 16) s.byte(0xcc);
  const size_t dispatch_at = s.size();
  Asm::Label leave;
  size_t dispatch_slot_at = 0, dispatch_lean_at = 0, dispatch_static_at = 0;
  emit_dispatcher(s, c, *a, leave, dispatch_slot_at, dispatch_lean_at, dispatch_static_at);
  s.bind(leave);
  s.alu_rr(6, 4, RAX, RAX);
  s.ret();
  while (s.size() % 16) s.byte(0xcc);
  s.place(a->base);
  a->exit_addr = uint64_t(a->base + exit_at);
  a->bail_addr = uint64_t(a->base + bail_at);
  a->dispatch_addr = uint64_t(a->base + dispatch_at);
  a->dispatch_slot_addr = uint64_t(a->base + dispatch_slot_at);
  a->dispatch_lean_addr = uint64_t(a->base + dispatch_lean_at);
  a->dispatch_static_addr = uint64_t(a->base + dispatch_static_at);
  a->chain.tlb_sets = &c.tlb.sets[0][0];
  a->enter_fn = reinterpret_cast<Arena::EnterFn>(a->base + enter_at);
  a->code_start = s.size();
  a->used = a->code_start;
  a->links_low = a->size & ~size_t(63);
  a->eh = make_eh_frame(uint64_t(a->base + body_at), size - body_at);
  __register_frame(a->eh.data());
  a->registered = true;
  a->perf_map = config().perf_map;
  if (a->perf_map) perf_map_add(a->base, a->code_start, "anykvm_trampoline_and_dispatcher", 0);
  return a;
}

void reset(Arena& a) {
  a.used = a.code_start;
  a.links_low = a.size & ~size_t(63);
  for (Arena::ChainEntry& e : a.table) e = Arena::ChainEntry{};
  g_resets.fetch_add(1, std::memory_order_relaxed);
}

const CodeHeader& header(const Arena& a, uint32_t off) { return *reinterpret_cast<const CodeHeader*>(a.base + off); }

bool enter(Arena& a, Cpu& c, const CodeHeader& h) {
  return a.enter_fn(&c, h.code, &c.tlb.sets[c.cpl == 3][0], &a.chain) == 0;
}

ChainState& chain_state(Arena& a) { return a.chain; }

void remember(Arena& a, uint64_t tag, uint64_t gpa, const CodeHeader& h, uint32_t n) {
  Arena::ChainEntry& e = a.table[Arena::chain_index(uint32_t(tag))];
  e.tag = tag;
  e.gpa = gpa;
  e.code = h.code;
  e.inval = *a.chain.inval;
  e.epoch = *a.chain.epoch;
  e.n = n;
  e.link_gen = *a.chain.link_gen;
  a.chain.cur_tag = tag;  // the block about to run (static links compare it)
}

// The dispatcher: called from a block's end (CS:EIP and Cpu::lf written
// back); returns the next block's code in rax, or jumps to `exit` (which
// returns 0). Calls nothing, so the pushed return address never meets the
// unwinder. Its second entry (`slot_at`) takes in r8 the block end's own
// ChainEntry, a link to the block that end went to last: tried before the
// shared table, and refreshed from the table when that finds another block.
void emit_dispatcher(Asm& s, const Cpu& c, const Arena& ar, Asm::Label& exit, size_t& slot_at, size_t& lean_at,
                     size_t& static_at) {
  using CS = ChainState;
  using Ent = Arena::ChainEntry;
  auto cs = [](size_t off) { return Mem{R14, int32_t(off)}; };
  auto cpu = [&](const auto& field) { return Mem{RBX, off_of(c, field)}; };
  Asm::Label full, tag, hash, enter;
  // Pending events (the engine loop's first check).
  auto events = [&] {
    static_assert(offsetof(CS, allowed) == 0 && offsetof(CS, dead) == 1);
    s.cmp_mem_simm8(2, cs(0), 1);  // allowed, not dead
    s.jcc(NE, exit);
    for (size_t f : {offsetof(CS, immediate_exit), offsetof(CS, kick), offsetof(CS, irq_attention),
                     offsetof(CS, q_pending)}) {
      s.mov_load(8, RAX, cs(f));
      s.cmp_mem_imm8(Mem{RAX, 0}, 0);
      s.jcc(NE, exit);
    }
    s.mov_load(8, RAX, cs(offsetof(CS, generation)));
    s.mov_load(8, RAX, Mem{RAX, 0});
    s.mov_load(8, RCX, cs(offsetof(CS, mem_generation)));
    s.alu_load(7, 8, RAX, Mem{RCX, 0});
    s.jcc(NE, exit);
  };
  // rax <- the TLB's link_gen; then compared with the link's at r8.
  auto load_link_gen = [&] {
    s.mov_load(8, RAX, cs(offsetof(CS, link_gen)));
    s.mov_load(8, RAX, Mem{RAX, 0});
  };
  auto cmp_link_gen = [&] {
    load_link_gen();
    s.alu_load(7, 8, RAX, Mem{R8, int32_t(offsetof(Ent, link_gen))});
  };
  s.alu_rr(6, 4, R10, R10);  // no link
  s.jmp(full);
  slot_at = s.size();
  s.mov_rr(8, R10, R8);
  s.bind(full);
  events();
  // What makes the loop step one instruction instead (shadow, debug).
  s.cmp_mem_imm8(cpu(c.interrupt_shadow), 0);
  s.jcc(NE, exit);
  s.test_mem_imm8(cpu(c.dr7), 0xff);
  s.jcc(NE, exit);
  s.test_mem_imm32(cpu(c.eflags_rest), fl::TF | fl::RF);
  s.jcc(NE, exit);
  s.cmp_mem_imm8(cpu(c.tlb.dbg.bs_deferred), 0);
  s.jcc(NE, exit);
  // 32-bit code only.
  s.cmp_mem_imm8(cpu(c.seg[1].db), 0);
  s.jcc(E, exit);
  s.jmp(tag);
  // The end of a block that ran only compiled instructions (and their slow
  // paths, the handlers of those same instructions): nothing there changes
  // the shadow, the debug state, TF/RF or CS, all clear when it was entered.
  lean_at = s.size();
  s.mov_rr(8, R10, R8);
  events();
  s.jmp(tag);
  // ... whose target is a constant offset from its own address (a direct
  // jump, call or fall-through): the target's tag is a function of the
  // running block's, so a link made from the same block tag holds without
  // computing the tag (while link_gen is unchanged).
  static_at = s.size();
  s.mov_rr(8, R10, R8);
  events();
  s.mov_load(8, RAX, cs(offsetof(CS, cur_tag)));
  s.alu_load(7, 8, RAX, Mem{R8, int32_t(offsetof(Ent, src_tag))});
  s.jcc(NE, tag);
  cmp_link_gen();
  s.jcc(E, enter);
  s.bind(tag);
  // lin = CS.base + EIP (32 bits); tag = lin | (CPL == 3) << 32 | 1 << 33
  s.mov_load(4, RDX, cpu(c.rip));
  s.mov_load(4, RCX, cpu(c.seg[1].base));
  s.alu_rr(0, 4, RDX, RCX);
  s.movx_load(false, 1, RCX, cpu(c.cpl));
  s.alu_imm(7, 4, RCX, 3);
  s.setcc(E, RCX);
  s.movx_rr(false, 1, RCX, RCX);  // ecx = user set
  s.lea(4, RAX, Mem{RCX, 2});
  s.shift_imm64(4, RAX, 32);
  s.alu_rr(1, 8, RAX, RDX);
  s.mov_rr(8, R11, RAX);  // r11 = tag, edx = lin
  // Whether the entry at r8 (tag already equal) may be entered: no block
  // invalidated and no revalidation due since it was made, and the TLB still
  // maps lin to the block's page for execution. Clobbers rax, rcx, r9, r12.
  static_assert(sizeof(Ent) == 64);
  static_assert(sizeof(Tlb::sets[0]) == 10240);
  auto validate = [&](Asm::Label& fail) {
    s.mov_load(8, RAX, cs(offsetof(CS, inval)));
    s.mov_load(8, RAX, Mem{RAX, 0});
    s.alu_load(7, 8, RAX, Mem{R8, int32_t(offsetof(Ent, inval))});
    s.jcc(NE, fail);
    s.mov_load(8, RAX, cs(offsetof(CS, epoch)));
    s.mov_load(4, RAX, Mem{RAX, 0});
    s.alu_load(7, 4, RAX, Mem{R8, int32_t(offsetof(Ent, epoch))});
    s.jcc(NE, fail);
    s.mov_rr(8, RCX, R11);
    s.shift_imm64(5, RCX, 32);
    s.alu_imm(4, 4, RCX, 1);  // the user set
    s.imul_imm(8, R12, RCX, 10240);
    s.alu_load(0, 8, R12, cs(offsetof(CS, tlb_sets)));
    s.mov_rr(4, RAX, RDX);
    s.shift_imm(5, 4, RAX, 12);
    s.movx_rr(false, 1, RAX, RAX);
    s.lea(8, RAX, Mem{RAX, 0, RAX, 2});
    s.lea(8, RAX, Mem{R12, 0, RAX, 3});
    s.mov_rr(4, RCX, RDX);
    s.alu_imm(4, 4, RCX, -4096);
    s.alu_load(7, 8, RCX, Mem{RAX, int32_t(offsetof(TlbEntry, tag_exec))});
    s.jcc(NE, fail);
    s.mov_load(8, RCX, Mem{RAX, int32_t(offsetof(TlbEntry, gpa_page))});
    s.mov_rr(4, R9, RDX);
    s.alu_imm(4, 4, R9, 0xfff);
    s.alu_rr(1, 8, RCX, R9);
    s.alu_load(7, 8, RCX, Mem{R8, int32_t(offsetof(Ent, gpa))});
    s.jcc(NE, fail);
  };
  // The end's link: no TLB lookup, invalidation or epoch check while the
  // TLB's link_gen is what it was when the link was made from a checked
  // entry (a translation may be used until the guest flushes it).
  s.test_rr(8, R10, R10);
  s.jcc(E, hash);
  s.mov_rr(8, R8, R10);
  s.alu_load(7, 8, R11, Mem{R8, int32_t(offsetof(Ent, tag))});
  s.jcc(NE, hash);
  cmp_link_gen();
  s.jcc(NE, hash);
  s.jmp(enter);
  // The shared table's entry.
  s.bind(hash);
  s.mov_rr(4, R8, RDX);
  s.mov_rr(4, R9, RDX);
  s.shift_imm(5, 4, R9, 12);
  s.alu_rr(6, 4, R8, R9);
  s.alu_imm(4, 4, R8, int32_t(Arena::k_chain_entries - 1));
  s.shift_imm64(4, R8, 6);  // * 64
  s.mov_imm64(R9, uint64_t(ar.table.data()));
  s.alu_rr(0, 8, R8, R9);
  s.alu_load(7, 8, R11, Mem{R8, int32_t(offsetof(Ent, tag))});
  s.jcc(NE, exit);
  validate(exit);
  // It holds: it becomes the end's link.
  s.test_rr(8, R10, R10);
  s.jcc(E, enter);
  for (int32_t k = 0; k < int32_t(offsetof(Ent, link_gen)); k += 8) {
    s.mov_load(8, RCX, Mem{R8, k});
    s.mov_store(8, Mem{R10, k}, RCX);
  }
  load_link_gen();
  s.mov_store(8, Mem{R10, int32_t(offsetof(Ent, link_gen))}, RAX);
  s.mov_load(8, RAX, cs(offsetof(CS, cur_tag)));
  s.mov_store(8, Mem{R10, int32_t(offsetof(Ent, src_tag))}, RAX);
  s.bind(enter);
  s.mov_load(8, RAX, Mem{R8, int32_t(offsetof(Ent, tag))});
  s.mov_store(8, cs(offsetof(CS, cur_tag)), RAX);
  // Enter it as the loop would: block_stop clear, counted.
  s.mov_load(8, RAX, cs(offsetof(CS, block_stop)));
  s.mov_mem_imm8(Mem{RAX, 0}, 0);
  s.mov_load(4, RCX, Mem{R8, int32_t(offsetof(Ent, n))});
  s.alu_store(0, 8, cs(offsetof(CS, insns)), RCX);
  s.incdec_mem(false, 8, cs(offsetof(CS, blocks)));
  s.mov_load(8, RAX, Mem{R8, int32_t(offsetof(Ent, code))});
  s.ret();
}

namespace {

uint32_t flags_ax(Cpu* c) {
  const uint32_t f = lazy_arith_flags(c->lf);
  return ((f & 0xd5) << 8) | ((f >> 11) & 1);
}

class Compiler {
 public:
  // `entry`: the entry assumptions to check first (from a pass without them).
  // `entry` null: the first pass (no code kept; it fills `h`).
  Compiler(const Cpu& c, const x86::Insn* insns, uint32_t n, const Arena& ar, const CodeHeader* entry)
      : a(entry == nullptr), m_insns(insns), m_n(n), m_exit(ar.exit_addr), m_bail(ar.bail_addr),
        m_dispatch(ar.dispatch_slot_addr), m_dispatch_lean(ar.dispatch_lean_addr),
        m_dispatch_static(ar.dispatch_static_addr), m_entry(entry) {
    for (unsigned s = 0; s < 6; ++s)
      if (c.seg[s].base == 0 && c.seg[s].limit == 0xffffffffu) m_flat |= uint8_t(1u << s);
    o.efer = off_of(c, c.efer);
    o.gpr = off_of(c, c.gpr);
    o.rip = off_of(c, c.rip);
    o.lf_op = off_of(c, c.lf.op);
    o.lf_flags = off_of(c, c.lf.flags);
    o.seg = off_of(c, c.seg);
    o.exit_pending = off_of(c, c.exit_pending);
    o.mmio_count = off_of(c, c.mmio_log.count);
    o.priv = off_of(c, c.priv);
    o.block_stop = private_block_stop_offset(c);
    m_logic_ok = host_logic_clears_af_cached();
    m_shift_nf = host_shifts_ignore_flags_in();
  }

  // Every block compiles (a block of handler calls still chains).
  void run() {
    if (m_entry) prologue(*m_entry);
    a.mov_load(4, RAX, Mem{RBX, o.rip});  // the entry EIP, which exits add offsets to
    a.mov_store(4, Mem{R14, int32_t(offsetof(ChainState, entry_eip))}, RAX);
    uint32_t off = 0;
    for (uint32_t k = 0; k < m_n; ++k) {
      const x86::Insn& in = m_insns[k];
      m_in = &in;
      m_off = off;
      m_next = off + in.len;
      m_last = k + 1 == m_n;
      m_ended = false;
      if (native(in)) {
        if (m_listing) m_listing->push_back(true);
      } else {
        call_insn();
        if (m_listing) m_listing->push_back(false);
      }
      off = m_next;
      if (m_ended) break;
    }
    if (!m_ended) {
      set_rip(m_next);
      spill_host();
      flush_regs();
      chain_out(true);
    }
    for (Stub& s : m_stubs) emit_stub(s);
    a.bind(m_l_exit);
    a.jmp_abs(m_exit);
  }

  Asm a;
  CodeHeader h;

 private:
  static bool host_logic_clears_af_cached() {
    static const bool v = host_logic_clears_af();
    return v;
  }

  // Where the guest's arithmetic flags are: Cpu::lf, the host's RFLAGS, or
  // r15 (LAHF/SETO form, saved around an inline memory access; put back into
  // the host only when an instruction reads them).
  enum class Fl : uint8_t { Mem, Host, R15 };
  static constexpr uint8_t k_pool[7] = {RBP, RDI, R8, R9, R10, R11, R13};
  struct RegCache {
    int8_t host[8] = {-1, -1, -1, -1, -1, -1, -1, -1};  // host register of guest register g, or -1
    bool dirty[8] = {};
    uint32_t used[8] = {};
  };
  struct Stub {
    Asm::Label entry, resume;
    const x86::Insn* in;
    uint32_t off, next;
    bool saved;        // the flags before the instruction are in r15 (else in Cpu::lf)
    bool reload;       // the fast path ends with the flags in the host
    bool exit_after;   // leave the block after the handler
    RegCache before, after;  // the register cache at the branch to the stub and at resume
  };

  // ---- operands ----
  Mem gslot(unsigned g, unsigned size) const {
    if (size == 1 && g >= 4 && g < 8) return Mem{RBX, o.gpr + int32_t((g - 4) * 8 + 1)};
    return Mem{RBX, o.gpr + int32_t(g * 8)};
  }
  // ---- guest registers held in host registers ----
  // Within a block, a guest register once read or written lives in one of
  // seven host registers (zero-extended, as in Cpu::gpr), written back when
  // dirty before anything else can see Cpu::gpr: a handler or C call (which
  // also clobbers them: the cache is emptied), the block's end, an eviction.
  // A slow-path stub writes back what was dirty when its instruction began
  // and reloads what the fast path holds where they meet again.
  void writeback(const RegCache& rc, unsigned g) {
    if (rc.host[g] >= 0 && rc.dirty[g]) a.mov_store(8, gslot(g, 4), uint8_t(rc.host[g]));
  }
  void writeback(unsigned g) {
    writeback(m_rc, g);
    m_rc.dirty[g] = false;
  }
  void drop(unsigned g) {
    writeback(g);
    m_rc.host[g] = -1;
  }
  void flush_regs() {  // before a call or the block's end
    for (unsigned g = 0; g < 8; ++g) drop(g);
  }
  // A host register for guest register g (not yet loaded): a free one of the
  // pool, else the least recently used one's (written back).
  uint8_t alloc(unsigned g) {
    bool busy[16] = {};
    int victim = -1;
    for (unsigned k = 0; k < 8; ++k) {
      if (m_rc.host[k] < 0) continue;
      busy[m_rc.host[k]] = true;
      if (victim < 0 || m_rc.used[k] < m_rc.used[victim]) victim = int(k);
    }
    uint8_t h = 0xff;
    for (uint8_t r : k_pool)
      if (!busy[r]) {
        h = r;
        break;
      }
    if (h == 0xff) {
      h = uint8_t(m_rc.host[victim]);
      drop(unsigned(victim));
    }
    m_rc.host[g] = int8_t(h);
    m_rc.dirty[g] = false;
    m_rc.used[g] = ++m_tick;
    return h;
  }
  // The host register holding guest register g's 32 bits (loaded if needed).
  uint8_t reg_of(unsigned g) {
    if (m_rc.host[g] >= 0) {
      m_rc.used[g] = ++m_tick;
      return uint8_t(m_rc.host[g]);
    }
    const uint8_t h = alloc(g);
    a.mov_load(4, h, gslot(g, 4));
    return h;
  }
  // ... for an instruction that writes all of it (the old value not needed).
  uint8_t reg_for_write(unsigned g) {
    const uint8_t h = m_rc.host[g] >= 0 ? uint8_t(m_rc.host[g]) : alloc(g);
    m_rc.used[g] = ++m_tick;
    m_rc.dirty[g] = true;
    return h;
  }
  // ... read-modify-write.
  uint8_t reg_rmw(unsigned g) {
    const uint8_t h = reg_of(g);
    m_rc.dirty[g] = true;
    return h;
  }
  static bool high_byte(unsigned g, unsigned size) { return size == 1 && g >= 4 && g < 8; }

  // host register <- guest register, zero-extended
  void load_g(uint8_t hr, unsigned g, unsigned size) {
    if (high_byte(g, size)) {  // AH..BH: from Cpu::gpr
      writeback(g - 4);
      a.movx_load(false, 1, hr, gslot(g, 1));
    } else if (size == 4) {
      a.mov_rr(4, hr, reg_of(g));
    } else {
      a.movx_rr(false, size, hr, reg_of(g));
    }
  }
  // guest register <- host register (4: zero-extended to 64 bits, as Cpu::set_reg)
  void store_g(unsigned g, uint8_t hr, unsigned size) {
    if (high_byte(g, size)) {
      drop(g - 4);
      a.mov_store(1, gslot(g, 1), hr);
    } else if (size == 4) {
      a.mov_rr(4, reg_for_write(g), hr);  // every producer is a 32-bit operation: bits 63:32 are 0
    } else {
      a.mov_rr(size, reg_rmw(g), hr);  // the low 8 or 16 bits; the rest stays
    }
  }
  // r32 <- the block's entry EIP + off (no flag change)
  void eip_at(uint8_t r, uint32_t off) {
    a.mov_load(4, r, Mem{R14, int32_t(offsetof(ChainState, entry_eip))});
    if (off) a.lea(4, r, Mem{r, int32_t(off)});
  }
  void set_rip(uint32_t off) {
    eip_at(RAX, off);
    a.mov_store(8, Mem{RBX, o.rip}, RAX);
  }
  Mem seg_field(unsigned s, int32_t field) const { return Mem{RBX, o.seg + int32_t(s * sizeof(Segment)) + field}; }

  // ---- flags ----
  void spill_host() {  // the flags -> Cpu::lf (no host flag change)
    if (m_fl == Fl::R15) {
      spill_r15();
    } else if (m_fl == Fl::Host) {
      a.pushfq();
      a.pop(RAX);
      write_lf_from_rax();
    }
    m_fl = Fl::Mem;
  }
  void write_lf_from_rax() {
    a.alu_imm(4, 4, RAX, int32_t(k_arith));
    a.mov_store(4, Mem{RBX, o.lf_flags}, RAX);
    a.mov_mem_imm8(Mem{RBX, o.lf_op}, uint8_t(FlagOp::None));
  }
  void save_r15() {
    a.lahf();
    a.setcc(O, RAX);
    a.mov_rr(4, R15, RAX);
  }
  void restore_r15() {
    a.mov_rr(4, RAX, R15);
    a.add_al_imm8(0x7f);
    a.sahf();
  }
  void spill_r15() {  // r15 (AH = SF ZF - AF - PF - CF, AL = OF) -> Cpu::lf
    a.mov_rr(4, RAX, R15);
    a.byte(0x0f);  // movzx ecx, ah
    a.byte(0xb6);
    a.byte(0xcc);
    a.alu_imm(4, 4, RCX, 0xd5);
    a.alu_imm(4, 4, RAX, 1);
    a.shift_imm(4, 4, RAX, 11);
    a.alu_rr(1, 4, RAX, RCX);
    a.mov_store(4, Mem{RBX, o.lf_flags}, RAX);
    a.mov_mem_imm8(Mem{RBX, o.lf_op}, uint8_t(FlagOp::None));
  }
  void reload() {  // Cpu::lf -> host flags
    a.mov_rr(8, RDI, RBX);
    a.mov_imm64(RAX, uint64_t(&flags_ax));
    call_rax();
    a.add_al_imm8(0x7f);
    a.sahf();
    m_fl = Fl::Host;
  }
  void need_flags() {  // the guest flags into the host flags
    if (m_fl == Fl::Mem) {
      flush_regs();  // a call
      reload();
    } else if (m_fl == Fl::R15) {
      restore_r15();
      m_fl = Fl::Host;
    }
  }
  void call_rax() {
    a.byte(0xff);
    a.byte(0xd0);
  }

  // ---- handler calls ----
  void call_handler(const x86::Insn* in) {
    a.mov_rr(8, RDI, RBX);
    a.mov_imm64(RSI, uint64_t(in));
    a.mov_imm64(RAX, uint64_t(in->fn));
    call_rax();
  }
  // After a handler: leave unless it retired normally to the next instruction.
  void post_check(uint32_t next) {
    stop_check();
    eip_at(RAX, next);
    a.alu_load(7, 8, RAX, Mem{RBX, o.rip});
    a.jcc(NE, m_l_exit);
  }
  // A block's normal end (CS:EIP and Cpu::lf written back): the dispatcher
  // returns the next block's code or 0 (then the engine loop takes over).
  // Each end has its own indirect jump, so the host predicts each separately.
  // `fixed`: the target is a constant offset from the block's address.
  void chain_out(bool fixed) {
    a.mov_imm64(R8, m_link_base ? uint64_t(m_link_base + m_links) : 0);
    ++m_links;
    a.call_abs(m_called ? m_dispatch : fixed ? m_dispatch_static : m_dispatch_lean);
    a.test_rr(8, RAX, RAX);
    a.jcc(E, m_l_exit);
    a.jmp_r(RAX);
  }
  void stop_check() {  // an exit, an MMIO record or a write to this block's page
    a.movx_load(false, 1, RAX, Mem{RBX, o.exit_pending});
    a.alu_load(1, 1, RAX, Mem{RBX, o.mmio_count});
    a.mov_load(8, RCX, Mem{RBX, o.priv});
    a.alu_load(1, 1, RAX, Mem{RCX, o.block_stop});
    a.jcc(NE, m_l_exit);
  }
  // Segment loads that do not end a block (POP ES/DS/FS/GS, LES/LDS/LFS/LGS):
  // the code after them was compiled for the segments checked at entry.
  static bool changes_segments(const x86::Insn& in) {
    if (in.map == x86::OpMap::OneByte) return in.opcode == 0x07 || in.opcode == 0x1f || in.opcode == 0xc4 || in.opcode == 0xc5;
    if (in.map == x86::OpMap::TwoByte)
      return in.opcode == 0xa1 || in.opcode == 0xa9 || in.opcode == 0xb4 || in.opcode == 0xb5;
    return false;
  }
  void call_insn() {
    m_called = true;
    spill_host();
    flush_regs();
    set_rip(m_off);
    call_handler(m_in);
    if (changes_segments(*m_in)) {
      a.jmp(m_l_exit);
      m_ended = true;
      return;
    }
    if (m_last) {  // the block's end: on to the next block unless the handler stopped
      stop_check();
      chain_out(false);
      m_ended = true;
      return;
    }
    post_check(m_next);
  }

  // ---- memory operands ----
  bool mem_form_ok(const x86::Insn& in) const { return in.addrsize == 4 && !in.rip_relative; }
  // EDX <- the effective address (no flag change)
  void ea_to_edx(const x86::Insn& in) { ea_to(in, RDX); }
  // `to` 0xff: into the host register of guest register in.reg (LEA r32).
  void ea_to(const x86::Insn& in, uint8_t to) {
    auto dst = [&] { return to == 0xff ? reg_for_write(in.reg) : to; };
    if (in.base != x86::k_no_reg) {
      const uint8_t b = reg_of(in.base);
      if (in.index != x86::k_no_reg) {
        const uint8_t i = reg_of(in.index);
        a.lea(4, dst(), Mem{b, int32_t(in.disp), i, in.scale});
      } else if (in.disp) {
        a.lea(4, dst(), Mem{b, int32_t(in.disp)});
      } else {
        const uint8_t d = dst();
        if (d != b) a.mov_rr(4, d, b);
      }
    } else if (in.index != x86::k_no_reg) {
      const uint8_t i = reg_of(in.index);
      a.mov_imm32(RDX, uint32_t(in.disp));
      a.lea(4, dst(), Mem{RDX, 0, i, in.scale});
    } else {
      a.mov_imm32(dst(), uint32_t(in.disp));
    }
  }
  // The access of `size` bytes at offset EDX in segment `s`: on the fast path
  // the host address is [rdx + rsi] and r8d holds the offset; otherwise the
  // stub runs the instruction's handler. The caller emits the operation and
  // then end_mem(). The guest flags, if in the host, are kept in r15.
  // `writes_flags`: the operation sets the flags; `reads_flags`: it consumes them
  // (then they are back in the host before it runs).
  Mem begin_mem(unsigned s, unsigned size, bool read, bool write, bool writes_flags, bool reads_flags = false,
                bool ea_ready = false) {
    m_stubs.emplace_back();
    Stub& st = m_stubs.back();
    st.in = m_in;
    st.off = m_off;
    st.next = m_next;
    st.saved = m_fl != Fl::Mem;
    st.exit_after = m_last;
    m_cur = &st;
    m_cur_writes_flags = writes_flags;
    if (m_fl == Fl::Host) save_r15();
    if (!ea_ready) ea_to_edx(*m_in);
    if (read) h.seg_read |= uint8_t(1u << s);
    if (write) h.seg_write |= uint8_t(1u << s);
    st.before = m_rc;  // as the slow path finds it (no cache change until its branches)
    if ((m_flat >> s) & 1) {
      // Base 0, limit 4 GiB (checked at entry): linear = offset. An access
      // past 4 GiB has a last page no tag equals: the handler raises the fault.
      h.seg_flat |= uint8_t(1u << s);
    } else {
      // limit: offset + size - 1 <= limit (64-bit sum: no wrap)
      a.mov_load(4, RCX, seg_field(s, offsetof(Segment, limit)));
      a.lea(8, RAX, Mem{RDX, int32_t(size - 1)});
      a.alu_rr(7, 8, RAX, RCX);
      a.jcc(A, st.entry);
      // linear = base + offset (32 bits)
      a.mov_load(4, RCX, seg_field(s, offsetof(Segment, base)));
      a.alu_rr(0, 4, RDX, RCX);
    }
    // TLB entry: sets[cpl][(lin >> 12) & 255], 40 bytes each
    static_assert(sizeof(TlbEntry) == 40 && Tlb::k_entries == 256);
    a.mov_rr(4, RAX, RDX);
    a.shift_imm(5, 4, RAX, 12);
    a.movx_rr(false, 1, RAX, RAX);
    a.lea(8, RAX, Mem{RAX, 0, RAX, 2});
    a.lea(8, RAX, Mem{R12, 0, RAX, 3});
    // the page of the last byte must be the entry's tag (one compare also rejects page crossings)
    a.lea(8, RCX, Mem{RDX, int32_t(size - 1)});
    a.and_imm64(RCX, -4096);
    if (read) {
      a.alu_load(7, 8, RCX, Mem{RAX, int32_t(offsetof(TlbEntry, tag_read))});
      a.jcc(NE, st.entry);
    }
    if (write) {
      a.alu_load(7, 8, RCX, Mem{RAX, int32_t(offsetof(TlbEntry, tag_write))});
      a.jcc(NE, st.entry);
    }
    a.mov_load(8, RSI, Mem{RAX, int32_t(offsetof(TlbEntry, addend))});
    m_cur_reads_flags = reads_flags;
    if (st.saved && reads_flags) restore_r15();  // else they stay in r15 until something reads them
    return Mem{RDX, 0, RSI, 0};
  }
  void end_mem() {
    Stub& st = *m_cur;
    // The slow path (handler, flags through Cpu::lf) must end in the same
    // place: host flags are reloaded from Cpu::lf; r15 still holds them.
    if (m_cur_writes_flags || (st.saved && m_cur_reads_flags)) m_fl = Fl::Host;
    else if (st.saved) m_fl = Fl::R15;
    st.reload = m_fl == Fl::Host;
    st.after = m_rc;
    a.bind(st.resume);
  }
  void emit_stub(Stub& s) {
    a.bind(s.entry);
    for (unsigned g = 0; g < 8; ++g) writeback(s.before, g);
    if (s.saved) spill_r15();
    set_rip(s.off);
    call_handler(s.in);
    if (s.exit_after || changes_segments(*s.in)) {
      a.jmp(m_l_exit);
    } else {
      post_check(s.next);
      if (s.reload) {
        m_fl = Fl::Mem;
        reload();
      }
      for (unsigned g = 0; g < 8; ++g)
        if (s.after.host[g] >= 0) a.mov_load(4, uint8_t(s.after.host[g]), gslot(g, 4));
      a.jmp(s.resume);
    }
  }

  // ---- instruction forms ----
  bool native(const x86::Insn& in) {
    if (!bound_to_opcode_handler(in) || in.lock || in.rep != x86::RepPrefix::None) return false;
    if (in.mem && !mem_form_ok(in)) return false;
    const unsigned sz = in.opsize;
    if (sz != 1 && sz != 2 && sz != 4) return false;
    if (in.map == x86::OpMap::OneByte) return one_byte(in, sz);
    if (in.map == x86::OpMap::TwoByte) return two_byte(in, sz);
    return false;
  }

  static bool alu_is_logic(unsigned op) { return op == 1 || op == 4 || op == 6; }

  bool one_byte(const x86::Insn& in, unsigned sz) {
    const uint8_t op = in.opcode;
    if (op < 0x40 && (op & 7) < 6) {  // ALU forms
      const unsigned alu = op >> 3;
      if (alu_is_logic(alu) && !m_logic_ok) return false;
      switch (op & 7) {
        case 0: case 1: alu_E_G(alu, sz); return true;
        case 2: case 3: alu_G_E(alu, sz); return true;
        default: alu_A_I(alu, sz); return true;
      }
    }
    if (op >= 0x40 && op <= 0x4f) {  // INC/DEC r
      need_flags();
      if (sz == 4) {
        a.incdec_r(op >= 0x48, 4, reg_rmw(in.reg));
      } else {
        load_g(RAX, in.reg, sz);
        a.incdec_r(op >= 0x48, sz, RAX);
        store_g(in.reg, RAX, sz);
      }
      m_fl = Fl::Host;
      return true;
    }
    if (op >= 0x50 && op <= 0x5f) return push_pop(in, sz, op >= 0x58);
    if (op == 0x80 || op == 0x81 || op == 0x83) {
      const unsigned alu = in.reg & 7;
      if (alu_is_logic(alu) && !m_logic_ok) return false;
      alu_E_I(alu, sz, in.imm);
      return true;
    }
    if (op == 0x84 || op == 0x85) {
      if (!m_logic_ok) return false;
      test_E_G(sz);
      return true;
    }
    if (op == 0xa8 || op == 0xa9) {
      if (!m_logic_ok) return false;
      load_g(RAX, 0, sz);
      test_imm_r(sz, RAX, in.imm);
      m_fl = Fl::Host;
      return true;
    }
    if (op >= 0x88 && op <= 0x8b) {
      if (op <= 0x89) mov_E_G(sz);
      else mov_G_E(sz);
      return true;
    }
    if (op == 0x8d) {
      if (!in.mem || !(sz == 2 || sz == 4)) return false;
      if (sz == 4) {
        ea_to(in, 0xff);  // straight into the destination's host register
      } else {
        ea_to_edx(in);
        store_g(in.reg, RDX, sz);
      }
      return true;
    }
    if (op >= 0xb0 && op <= 0xbf) {
      if (sz == 4) {
        a.mov_imm32(reg_for_write(in.reg), uint32_t(in.imm));
      } else {
        a.mov_imm32(RCX, uint32_t(in.imm));
        store_g(in.reg, RCX, sz);
      }
      return true;
    }
    if ((op == 0xc6 || op == 0xc7) && (in.reg & 7) == 0) {
      if (in.mem) {
        Mem m = begin_mem(in.seg, sz, false, true, false);
        a.mov_imm32(RCX, uint32_t(in.imm));
        a.mov_store(sz, m, RCX);
        end_mem();
      } else {
        a.mov_imm32(RCX, uint32_t(in.imm));
        store_g(in.rm, RCX, sz);
      }
      return true;
    }
    if (op == 0xc0 || op == 0xc1 || op == 0xd0 || op == 0xd1) {
      const unsigned sub = in.reg & 7;
      if (sub != 4 && sub != 5 && sub != 6 && sub != 7) return false;
      const uint8_t count = uint8_t((op <= 0xc1 ? in.imm : 1) & 0x1f);
      if (!count) return false;
      if (!m_shift_nf) need_flags();
      if (in.mem) {
        Mem m = begin_mem(in.seg, sz, true, true, true, !m_shift_nf);
        a.prefix_mem(sz, 0, m);
        a.byte(sz == 1 ? 0xc0 : 0xc1);
        a.modrm_mem(uint8_t(sub), m);
        a.byte(count);
        end_mem();
      } else if (sz == 4) {
        a.shift_imm(sub, 4, reg_rmw(in.rm), count);
        m_fl = Fl::Host;
      } else {
        load_g(RAX, in.rm, sz);
        a.shift_imm(sub, sz, RAX, count);
        store_g(in.rm, RAX, sz);
        m_fl = Fl::Host;
      }
      return true;
    }
    if ((op == 0xf6 || op == 0xf7) && (in.reg & 7) <= 3 && (in.reg & 7) != 1) {
      const unsigned sub = in.reg & 7;
      if (sub == 0) {
        if (!m_logic_ok) return false;
        if (in.mem) {
          Mem m = begin_mem(in.seg, sz, true, false, true);
          a.prefix_mem(sz, 0, m);
          a.byte(sz == 1 ? 0xf6 : 0xf7);
          a.modrm_mem(0, m);
          imm_bytes(sz, in.imm);
          end_mem();
        } else {
          load_g(RAX, in.rm, sz);
          test_imm_r(sz, RAX, in.imm);
          m_fl = Fl::Host;
        }
        return true;
      }
      // 2 NOT (no flags), 3 NEG
      if (in.mem) {
        Mem m = begin_mem(in.seg, sz, true, true, sub == 3);
        a.op_mem(0xf7, sz, uint8_t(sub), m);
        end_mem();
      } else if (sz == 4) {
        a.grp3_r(sub, 4, reg_rmw(in.rm));
        if (sub == 3) m_fl = Fl::Host;
      } else {
        load_g(RAX, in.rm, sz);
        a.grp3_r(sub, sz, RAX);
        store_g(in.rm, RAX, sz);
        if (sub == 3) m_fl = Fl::Host;
      }
      return true;
    }
    if ((op == 0xfe || op == 0xff) && (in.reg & 7) <= 1) {
      const bool dec = (in.reg & 7) == 1;
      need_flags();
      if (in.mem) {
        Mem m = begin_mem(in.seg, sz, true, true, true, true);
        a.incdec_mem(dec, sz, m);
        end_mem();
      } else {
        load_g(RAX, in.rm, sz);
        a.incdec_r(dec, sz, RAX);
        store_g(in.rm, RAX, sz);
        m_fl = Fl::Host;
      }
      return true;
    }
    if (op >= 0xa0 && op <= 0xa3) {  // MOV AL/eAX <-> moffs
      if (op <= 0xa1) {
        Mem m = begin_mem(in.seg, sz, true, false, false);
        if (sz == 4) a.mov_load(4, RCX, m);
        else a.movx_load(false, sz, RCX, m);
        store_g(0, RCX, sz);
        end_mem();
      } else {
        Mem m = begin_mem(in.seg, sz, false, true, false);
        load_g(RCX, 0, sz);
        a.mov_store(sz, m, RCX);
        end_mem();
      }
      return true;
    }
    if ((op == 0x68 || op == 0x6a) && sz == 4) {  // PUSH imm
      h.stack32 = true;
      a.lea(4, RDX, Mem{reg_of(4), -4});
      Mem m = begin_mem(2, 4, false, true, false, false, true);
      a.mov_imm32(RCX, uint32_t(in.imm));
      a.mov_store(4, m, RCX);
      const uint8_t sp = reg_rmw(4);
      a.lea(4, sp, Mem{sp, -4});
      end_mem();
      return true;
    }
    if (op == 0xe8) return call_rel(in, sz);
    if (op == 0xc3) return ret_near(sz);
    if (op >= 0x70 && op <= 0x7f) return jcc(in, op & 0xf, sz);
    if (op == 0xeb || op == 0xe9) return jmp_rel(in, sz);
    if (op == 0x69 || op == 0x6b) return imul3(in, sz);
    return false;
  }

  bool two_byte(const x86::Insn& in, unsigned sz) {
    const uint8_t op = in.opcode;
    if (op >= 0x80 && op <= 0x8f) return jcc(in, op & 0xf, sz);
    if (op == 0xb6 || op == 0xb7 || op == 0xbe || op == 0xbf) {
      if (sz == 1) return false;
      const unsigned from = (op & 1) ? 2 : 1;
      const bool sign = op >= 0xbe;
      if (in.mem) {
        Mem m = begin_mem(in.seg, from, true, false, false);
        if (sz == 4) {
          a.movx_load(sign, from, reg_for_write(in.reg), m);
        } else {
          a.movx_load(sign, from, RCX, m);
          store_g(in.reg, RCX, sz);
        }
        end_mem();
      } else if (sz == 4 && !high_byte(in.rm, from)) {
        const uint8_t hs = reg_of(in.rm);
        a.movx_rr(sign, from, reg_for_write(in.reg), hs);
      } else {
        load_g(RCX, in.rm, from);
        if (sign) a.movx_rr(true, from, RCX, RCX);
        store_g(in.reg, RCX, sz);
      }
      return true;
    }
    if (op == 0xaf) {  // IMUL r, r/m
      if (sz == 1) return false;
      need_flags();
      if (in.mem) {
        Mem m = begin_mem(in.seg, sz, true, false, true, true);
        const uint8_t d = sz == 4 ? reg_rmw(in.reg) : RAX;
        if (sz != 4) load_g(RAX, in.reg, sz);
        a.prefix_mem(sz, d, m);
        a.byte(0x0f);
        a.byte(0xaf);
        a.modrm_mem(d, m);
        if (sz != 4) store_g(in.reg, RAX, sz);
        end_mem();
      } else if (sz == 4) {
        const uint8_t hs = reg_of(in.rm);
        a.imul_rr(4, reg_rmw(in.reg), hs);
        m_fl = Fl::Host;
      } else {
        load_g(RAX, in.reg, sz);
        load_g(RCX, in.rm, sz);
        a.imul_rr(sz, RAX, RCX);
        store_g(in.reg, RAX, sz);
        m_fl = Fl::Host;
      }
      return true;
    }
    if (op >= 0x40 && op <= 0x4f) {  // CMOVcc
      if (sz == 1) return false;
      need_flags();
      const uint8_t cc = op & 0xf;
      if (in.mem) {
        Mem m = begin_mem(in.seg, sz, true, false, false, true);
        const uint8_t d = sz == 4 ? reg_rmw(in.reg) : RAX;
        if (sz != 4) load_g(RAX, in.reg, sz);
        a.prefix_mem(sz, d, m);
        a.byte(0x0f);
        a.byte(uint8_t(0x40 + cc));
        a.modrm_mem(d, m);
        if (sz != 4) store_g(in.reg, RAX, sz);
        end_mem();
      } else if (sz == 4) {
        const uint8_t hs = reg_of(in.rm);
        const uint8_t d = reg_rmw(in.reg);
        a.prefix_rr(4, d, hs);
        a.byte(0x0f);
        a.byte(uint8_t(0x40 + cc));
        a.modrm_rr(d, hs);
      } else {
        load_g(RAX, in.reg, sz);
        load_g(RCX, in.rm, sz);
        a.prefix_rr(sz, RAX, RCX);
        a.byte(0x0f);
        a.byte(uint8_t(0x40 + cc));
        a.modrm_rr(RAX, RCX);
        store_g(in.reg, RAX, sz);
      }
      return true;
    }
    if (op >= 0x90 && op <= 0x9f) {  // SETcc r/m8
      need_flags();
      const Cc cc = Cc(op & 0xf);
      if (in.mem) {
        Mem m = begin_mem(in.seg, 1, false, true, false, true);
        a.setcc(cc, RCX);
        a.mov_store(1, m, RCX);
        end_mem();
      } else {
        a.setcc(cc, RCX);
        store_g(in.rm, RCX, 1);
      }
      return true;
    }
    return false;
  }

  void imm_bytes(unsigned sz, uint64_t imm) {
    if (sz == 1) a.byte(uint8_t(imm));
    else if (sz == 2) {
      a.byte(uint8_t(imm));
      a.byte(uint8_t(imm >> 8));
    } else {
      a.u32(uint32_t(imm));
    }
  }
  void test_imm_r(unsigned sz, uint8_t r, uint64_t imm) {
    a.prefix_rr(sz, 0, r);
    a.byte(sz == 1 ? 0xf6 : 0xf7);
    a.modrm_rr(0, r);
    imm_bytes(sz, imm);
  }

  static bool alu_reads_cf(unsigned alu) { return alu == 2 || alu == 3; }  // ADC, SBB
  // guest register `dst` op= guest register `src` (CMP: flags only)
  void alu_regs(unsigned alu, unsigned sz, unsigned dst, unsigned src) {
    if (sz == 4) {
      const uint8_t hs = reg_of(src);
      a.alu_rr(alu, 4, alu == 7 ? reg_of(dst) : reg_rmw(dst), hs);
      m_fl = Fl::Host;
      return;
    }
    load_g(RAX, dst, sz);
    load_g(RCX, src, sz);
    a.alu_rr(alu, sz, RAX, RCX);
    if (alu != 7) store_g(dst, RAX, sz);
    m_fl = Fl::Host;
  }
  // op r/m, reg
  void alu_E_G(unsigned alu, unsigned sz) {
    const x86::Insn& in = *m_in;
    if (alu_reads_cf(alu)) need_flags();
    if (!in.mem) return alu_regs(alu, sz, in.rm, in.reg);
    Mem m = begin_mem(in.seg, sz, true, alu != 7, true, alu_reads_cf(alu));
    if (sz == 4) {
      a.alu_store(alu, 4, m, reg_of(in.reg));
    } else {
      load_g(RCX, in.reg, sz);
      a.alu_store(alu, sz, m, RCX);
    }
    end_mem();
  }
  // op reg, r/m
  void alu_G_E(unsigned alu, unsigned sz) {
    const x86::Insn& in = *m_in;
    if (alu_reads_cf(alu)) need_flags();
    if (!in.mem) return alu_regs(alu, sz, in.reg, in.rm);
    Mem m = begin_mem(in.seg, sz, true, false, true, alu_reads_cf(alu));
    if (sz == 4) {
      a.alu_load(alu, 4, alu == 7 ? reg_of(in.reg) : reg_rmw(in.reg), m);
    } else {
      load_g(RAX, in.reg, sz);
      a.alu_load(alu, sz, RAX, m);
      if (alu != 7) store_g(in.reg, RAX, sz);
    }
    end_mem();
  }
  void alu_A_I(unsigned alu, unsigned sz) {
    if (alu_reads_cf(alu)) need_flags();
    if (sz == 4) {
      a.alu_imm(alu, 4, alu == 7 ? reg_of(0) : reg_rmw(0), int32_t(uint32_t(m_in->imm)));
    } else {
      load_g(RAX, 0, sz);
      a.alu_imm(alu, sz, RAX, int32_t(uint32_t(m_in->imm)));
      if (alu != 7) store_g(0, RAX, sz);
    }
    m_fl = Fl::Host;
  }
  void alu_E_I(unsigned alu, unsigned sz, uint64_t imm) {
    const x86::Insn& in = *m_in;
    if (alu_reads_cf(alu)) need_flags();
    const int32_t v = sz == 1 ? int32_t(int8_t(imm)) : sz == 2 ? int32_t(int16_t(imm)) : int32_t(uint32_t(imm));
    if (in.mem) {
      Mem m = begin_mem(in.seg, sz, true, alu != 7, true, alu_reads_cf(alu));
      a.alu_mem_imm(alu, sz, m, v);
      end_mem();
    } else if (sz == 4) {
      a.alu_imm(alu, 4, alu == 7 ? reg_of(in.rm) : reg_rmw(in.rm), v);
      m_fl = Fl::Host;
    } else {
      load_g(RAX, in.rm, sz);
      a.alu_imm(alu, sz, RAX, v);
      if (alu != 7) store_g(in.rm, RAX, sz);
      m_fl = Fl::Host;
    }
  }
  void test_E_G(unsigned sz) {
    const x86::Insn& in = *m_in;
    if (in.mem) {
      Mem m = begin_mem(in.seg, sz, true, false, true);
      if (sz == 4) {
        a.op_mem(0x85, 4, reg_of(in.reg), m);
      } else {
        load_g(RCX, in.reg, sz);
        a.op_mem(0x85, sz, RCX, m);
      }
      end_mem();
    } else if (sz == 4) {
      const uint8_t hr = reg_of(in.reg);
      a.test_rr(4, reg_of(in.rm), hr);
      m_fl = Fl::Host;
    } else {
      load_g(RAX, in.rm, sz);
      load_g(RCX, in.reg, sz);
      a.test_rr(sz, RAX, RCX);
      m_fl = Fl::Host;
    }
  }
  void mov_regs4(unsigned dst, unsigned src) {
    const uint8_t hs = reg_of(src);
    const uint8_t hd = reg_for_write(dst);
    if (hd != hs) a.mov_rr(4, hd, hs);
  }
  void mov_E_G(unsigned sz) {
    const x86::Insn& in = *m_in;
    if (in.mem) {
      Mem m = begin_mem(in.seg, sz, false, true, false);
      if (sz == 4) {
        a.mov_store(4, m, reg_of(in.reg));
      } else {
        load_g(RCX, in.reg, sz);
        a.mov_store(sz, m, RCX);
      }
      end_mem();
    } else if (sz == 4) {
      mov_regs4(in.rm, in.reg);
    } else {
      load_g(RCX, in.reg, sz);
      store_g(in.rm, RCX, sz);
    }
  }
  void mov_G_E(unsigned sz) {
    const x86::Insn& in = *m_in;
    if (in.mem) {
      Mem m = begin_mem(in.seg, sz, true, false, false);
      if (sz == 4) {
        a.mov_load(4, reg_for_write(in.reg), m);
      } else {
        a.movx_load(false, sz, RCX, m);
        store_g(in.reg, RCX, sz);
      }
      end_mem();
    } else if (sz == 4) {
      mov_regs4(in.reg, in.rm);
    } else {
      load_g(RCX, in.rm, sz);
      store_g(in.reg, RCX, sz);
    }
  }
  bool imul3(const x86::Insn& in, unsigned sz) {
    if (sz == 1) return false;
    need_flags();
    const uint32_t imm = uint32_t(in.imm);
    if (in.mem) {
      Mem m = begin_mem(in.seg, sz, true, false, true, true);
      const uint8_t d = sz == 4 ? reg_for_write(in.reg) : RAX;
      a.prefix_mem(sz, d, m);
      a.byte(0x69);
      a.modrm_mem(d, m);
      imm_bytes(sz, imm);
      if (sz != 4) store_g(in.reg, RAX, sz);
      end_mem();
    } else if (sz == 4) {
      const uint8_t hs = reg_of(in.rm);
      const uint8_t d = reg_for_write(in.reg);
      a.prefix_rr(4, d, hs);
      a.byte(0x69);
      a.modrm_rr(d, hs);
      imm_bytes(4, imm);
    } else {
      load_g(RCX, in.rm, sz);
      a.prefix_rr(sz, RAX, RCX);
      a.byte(0x69);
      a.modrm_rr(RAX, RCX);
      imm_bytes(sz, imm);
      store_g(in.reg, RAX, sz);
      m_fl = Fl::Host;
    }
    return true;
  }
  bool push_pop(const x86::Insn& in, unsigned sz, bool pop) {
    if (sz != 4) return false;
    h.stack32 = true;
    const unsigned g = in.reg;
    a.lea(4, RDX, Mem{reg_of(4), pop ? 0 : -4});
    Mem m = begin_mem(2, 4, pop, !pop, false, false, true);
    if (pop) {
      a.mov_load(4, RCX, m);
      const uint8_t sp = reg_rmw(4);
      a.lea(4, sp, Mem{sp, 4});
      store_g(g, RCX, 4);
    } else {
      a.mov_store(4, m, reg_of(g));
      const uint8_t sp = reg_rmw(4);
      a.lea(4, sp, Mem{sp, -4});
    }
    end_mem();
    return true;
  }

  // Block-ending jumps: CS:EIP <- target after the CS limit check (jump_to).
  void jump_tail(uint32_t target_off, Asm::Label& gp) {
    eip_at(RAX, target_off);
    a.mov_load(4, RCX, seg_field(1, offsetof(Segment, limit)));
    a.alu_rr(7, 8, RAX, RCX);
    a.jcc(A, gp);
    a.mov_store(8, Mem{RBX, o.rip}, RAX);
    chain_out(true);
  }
  void gp_path(Asm::Label& gp) {  // the handler raises #GP(0) with the flags in Cpu::lf
    a.bind(gp);
    set_rip(m_off);
    call_handler(m_in);
    a.jmp_abs(m_exit);
  }
  bool jcc(const x86::Insn& in, unsigned cc, unsigned sz) {
    if (sz != 4 || !m_last || m_fl == Fl::Mem) return false;
    flush_regs();  // (movs: the flags stay)
    need_flags();
    a.pushfq();
    a.pop(RAX);
    Asm::Label taken, gp;
    a.jcc(Cc(cc), taken);
    write_lf_from_rax();
    set_rip(m_next);
    chain_out(true);
    a.bind(taken);
    write_lf_from_rax();
    jump_tail(m_next + uint32_t(in.imm), gp);
    gp_path(gp);
    m_fl = Fl::Mem;
    m_ended = true;
    return true;
  }
  // CALL rel32: the CS limit check on the target (#GP before the push), the
  // push through SS, then CS:EIP <- target.
  bool call_rel(const x86::Insn& in, unsigned sz) {
    if (sz != 4 || !m_last) return false;
    spill_host();
    flush_regs();
    h.stack32 = true;
    const uint32_t target = m_next + uint32_t(in.imm);
    Asm::Label gp;
    eip_at(RAX, target);
    a.mov_load(4, RCX, seg_field(1, offsetof(Segment, limit)));
    a.alu_rr(7, 8, RAX, RCX);
    a.jcc(A, gp);
    a.mov_load(4, RDX, gslot(4, 4));
    a.lea(4, RDX, Mem{RDX, -4});
    a.mov_rr(4, R8, RDX);  // the new ESP (the cache is empty: r8 is free)
    Mem m = begin_mem(2, 4, false, true, false, false, true);
    eip_at(RCX, m_next);
    a.mov_store(4, m, RCX);
    a.mov_store(8, gslot(4, 4), R8);  // (the cache is empty: written back above)
    eip_at(RAX, target);
    a.mov_store(8, Mem{RBX, o.rip}, RAX);
    end_mem();
    chain_out(true);
    gp_path(gp);
    m_ended = true;
    return true;
  }
  // RET: pop the target, check it against the CS limit (the handler raises
  // #GP with ESP unchanged), then commit ESP and CS:EIP.
  bool ret_near(unsigned sz) {
    if (sz != 4 || !m_last) return false;
    spill_host();
    flush_regs();
    h.stack32 = true;
    a.mov_load(4, RDX, gslot(4, 4));
    a.mov_rr(4, R8, RDX);  // ESP (the cache is empty: r8 is free)
    Mem m = begin_mem(2, 4, true, false, false, false, true);
    a.mov_load(4, RCX, m);
    a.mov_load(4, RAX, seg_field(1, offsetof(Segment, limit)));
    a.alu_rr(7, 8, RCX, RAX);
    a.jcc(A, m_cur->entry);
    a.lea(4, RAX, Mem{R8, 4});
    a.mov_store(8, gslot(4, 4), RAX);
    a.mov_store(8, Mem{RBX, o.rip}, RCX);
    end_mem();
    chain_out(false);
    m_ended = true;
    return true;
  }
  bool jmp_rel(const x86::Insn& in, unsigned sz) {
    if (sz != 4 || !m_last) return false;
    spill_host();
    flush_regs();
    Asm::Label gp;
    jump_tail(m_next + uint32_t(in.imm), gp);
    gp_path(gp);
    m_ended = true;
    return true;
  }

  // What the inline paths assume and entry_ok-style checks leave to them: not
  // long mode, SS.B for PUSH/POP, and each segment they use usable with a type
  // that passes mmu_seg_linear's fast check for the access (access_inl.h).
  void prologue(const CodeHeader& e) {
    Asm::Label bail;
    a.test_mem_imm8(Mem{RBX, o.efer + 1}, uint8_t(efer::LMA >> 8));
    a.jcc(NE, bail);
    if (e.stack32) {
      a.cmp_mem_imm8(seg_field(2, offsetof(Segment, db)), 0);
      a.jcc(E, bail);
    }
    for (unsigned s = 0; s < 6; ++s) {
      const bool r = (e.seg_read >> s) & 1, w = (e.seg_write >> s) & 1;
      if (!r && !w) continue;
      a.cmp_mem_imm8(seg_field(s, offsetof(Segment, unusable)), 0);
      a.jcc(NE, bail);
      if ((e.seg_flat >> s) & 1) {
        a.cmp_mem_simm8(4, seg_field(s, offsetof(Segment, limit)), -1);
        a.jcc(NE, bail);
        a.cmp_mem_simm8(8, seg_field(s, offsetof(Segment, base)), 0);
        a.jcc(NE, bail);
      }
      a.movx_load(false, 1, RAX, seg_field(s, offsetof(Segment, type)));
      a.alu_imm(4, 4, RAX, 15);
      for (int k = 0; k < 2; ++k) {
        if (!(k == 0 ? r : w)) continue;
        a.mov_imm32(RCX, k == 0 ? k_seg_fast_read : k_seg_fast_write);
        a.bt_rr(RCX, RAX);
        a.jcc(AE, bail);
      }
    }
    Asm::Label go;
    a.jmp(go);
    a.bind(bail);
    a.jmp_abs(m_bail);
    a.bind(go);
  }

  const x86::Insn* m_insns;
  uint32_t m_n;
  uint64_t m_exit, m_bail, m_dispatch, m_dispatch_lean, m_dispatch_static;
  bool m_called = false;  // a handler call (not a slow path) precedes this point
  const CodeHeader* m_entry;
  uint8_t m_flat = 0;  // segments with base 0 and limit 4 GiB when compiled
  Offsets o{};
  bool m_logic_ok = false, m_shift_nf = false;
  Fl m_fl = Fl::Mem;
  RegCache m_rc;
  uint32_t m_tick = 0;
  const x86::Insn* m_in = nullptr;
  uint32_t m_off = 0, m_next = 0;
  bool m_last = false, m_ended = false;

 public:
  std::vector<bool>* m_listing = nullptr;  // per instruction: compiled inline (else a handler call)

 private:
  std::deque<Stub> m_stubs;

 public:
  // Each block end's link (Arena::ChainEntry, written by the dispatcher),
  // in the arena's link area: data kept apart from code.
  Arena::ChainEntry* m_link_base = nullptr;
  uint32_t m_links = 0;

 private:
  Stub* m_cur = nullptr;
  bool m_cur_writes_flags = false, m_cur_reads_flags = false;
  Asm::Label m_l_exit;  // leave to the engine loop (bound after the stubs)
};

}  // namespace

namespace {
// /tmp/<prefix><pid><suffix>, opened for appending (nullptr if it cannot be).
FILE* open_pid_file(const char* prefix, const char* suffix) {
  char path[96];
  std::snprintf(path, sizeof path, "/tmp/%s%d%s", prefix, int(getpid()), suffix);
  return std::fopen(path, "a");
}
// perf's map for JIT code (tools/perf/Documentation/jit-interface.txt): "START SIZE name" lines.
void perf_map_add(const void* start, size_t size, const char* what, uint64_t gpa) {
  static std::mutex lock;
  static FILE* f = open_pid_file("perf-", ".map");
  if (!f) return;
  std::lock_guard<std::mutex> g(lock);
  std::fprintf(f, "%lx %zx %s%lx\n", uintptr_t(start), size, what, (unsigned long)gpa);
  std::fflush(f);
}
}  // namespace

// Beside the perf map: each compiled block's instructions, marked inline (=)
// or handler call (h), and (ANYKVM_JIT_PERFMAP=2) its host code in hex, in /tmp/anykvm-jit-<pid>.txt.
void perf_map_listing(uint64_t gpa, const x86::Insn* insns, uint32_t n, const std::vector<bool>& native,
                      const uint8_t* code, size_t size) {
  static std::mutex lock;
  static FILE* f = open_pid_file("anykvm-jit-", ".txt");
  if (!f) return;
  std::lock_guard<std::mutex> g(lock);
  std::fprintf(f, "block gpa %lx\n", (unsigned long)gpa);
  uint64_t ip = gpa;
  for (uint32_t k = 0; k < n && k < native.size(); ++k) {
    std::fprintf(f, "  %c %lx %s\n", native[k] ? '=' : 'h', (unsigned long)ip, x86::disassemble(insns[k], ip).c_str());
    ip += insns[k].len;
  }
  if (size) {  // the host bytes, for objdump (ANYKVM_JIT_PERFMAP=2)
    std::fprintf(f, "  code %lx ", (unsigned long)uintptr_t(code));
    for (size_t k = 0; k < size; ++k) std::fprintf(f, "%02x", code[k]);
    std::fprintf(f, "\n");
  }
  std::fflush(f);
}

uint32_t compile(Arena& ar, const Cpu& c, const x86::Insn* insns, uint32_t n, uint64_t gpa, bool& full) {
  full = false;
  Compiler probe(c, insns, n, ar, nullptr);
  probe.run();
  // The links grow down from the arena's top, the code up from its bottom.
  const size_t link_bytes = probe.m_links * sizeof(Arena::ChainEntry);
  if (ar.links_low < link_bytes + ar.used) {
    full = true;
    return 0;
  }
  const size_t link_at = (ar.links_low - link_bytes) & ~size_t(63);
  Compiler k(c, insns, n, ar, &probe.h);
  k.m_link_base = reinterpret_cast<Arena::ChainEntry*>(ar.base + link_at);
  std::vector<bool> listing;
  if (ar.perf_map) k.m_listing = &listing;
  k.run();
  const size_t hdr = (sizeof(CodeHeader) + 15) & ~size_t(15);
  const size_t need = hdr + k.a.size();
  const size_t at = (ar.used + 15) & ~size_t(15);
  if (at + need > link_at) {
    full = true;
    return 0;
  }
  for (uint32_t i = 0; i < k.m_links; ++i) k.m_link_base[i] = Arena::ChainEntry{};
  ar.links_low = link_at;
  CodeHeader h = k.h;
  h.code = ar.base + at + hdr;
  if (!k.a.place(ar.base + at + hdr)) return 0;
  std::memcpy(ar.base + at, &h, sizeof(h));
  ar.used = at + need;
  g_compiled.fetch_add(1, std::memory_order_relaxed);
  if (ar.perf_map) {
    perf_map_add(h.code, k.a.size(), "anykvm_block_gpa_", gpa);
    perf_map_listing(gpa, insns, n, listing, h.code, ar.perf_map >= 2 ? k.a.size() : 0);
  }
  return uint32_t(at);
}

}  // namespace anykvm::soft::jit
