// The KVM_RUN loop of the software engine (DESIGN.md "Speed is designed in"):
// decoded instructions are cached in blocks keyed by the guest-physical address
// of their first byte and the code size; a block ends at a control transfer, a
// mode/segment/interrupt-state change (A_END rows) or the page end. The hot
// loop calls each Insn's bound handler and checks only "exit pending / block
// invalidated" and "RIP went where the next instruction is". Stop flags, the
// memory-map generation, cross-vCPU requests and the interrupt window are
// checked at block boundaries, in one branch while none is pending. A block
// remembers where it went (Block::Link, block chaining), so the next block is
// usually found without the code-address translation and the cache lookup.
// Instructions in an interrupt shadow, under debug (TF/DR7) or the
// instruction trace run one at a time (step()). A 32-bit block that started
// often enough runs as compiled host code instead (jit/jit.h), which goes on
// to the next compiled block itself while the loop would only look it up.
// Event and exit ordering at entry follows cpu/backend.h VcpuBackend::run.
#include "cpu/soft/soft_vcpu.h"

#include <sys/mman.h>

#include <cstring>
#include <new>

#include "cpu/soft/cpuid_msr.h"
#include "cpu/soft/dispatch.h"
#include "cpu/soft/events/debug.h"
#include "cpu/soft/fpu/fpu.h"
#include "cpu/soft/mmu/mmu.h"
#include "cpu/soft/soft_vm.h"
#include "cpu/soft/trace.h"
#include "x86/decode/decoder.h"

namespace anykvm::soft {
namespace {

thread_local Cpu* t_running = nullptr;
constexpr size_t k_max_block_insns = 256;
constexpr uint64_t k_page = 4096;
constexpr size_t k_cache_line = 64;

unsigned code_mode(const Cpu& c) { return c.code32() ? 32 : 16; }
uint64_t cs_linear(const Cpu& c) { return uint32_t(c.seg[1].base + c.rip); }

// Decode the single instruction at CS:EIP (not cached). Raises the fetch fault
// for bytes the instruction needs beyond what is fetchable.
void decode_single(Cpu& c, x86::Insn& in) {
  uint8_t buf[16] = {};
  uint64_t lin = cs_linear(c);
  size_t n = c.fetch_code(lin, buf, x86::k_max_insn_len);
  x86::DecodeStatus st = x86::decode(buf, n, code_mode(c), in);
  if (st == x86::DecodeStatus::Truncated) {
    uint64_t eip = (c.rip + n) & (c.code32() ? 0xffffffffull : 0xffffull);
    if (eip > c.seg[1].limit) throw fault(Vec::GP, 0);
    mmu_code_gpa(c, uint32_t(lin + n));  // throws #PF for a missing page
    in = x86::Insn{};
    in.len = uint8_t(n);
    in.fn = h_unimplemented;  // the rest of the instruction is in MMIO
    return;
  }
  bind_handler(in, st);
}

Block* build_block(Cpu& c, uint64_t lin, uint64_t gpa, uint64_t key) {
  Cpu::Private& p = *c.priv;
  uint8_t buf[k_page];
  // Decoded in place (each element reset before use): a local array of
  // Insn would construct all k_max_block_insns elements on every call.
  static thread_local x86::Insn insns[k_max_block_insns];
  size_t room = k_page - (gpa & (k_page - 1));
  size_t avail = c.fetch_code(lin, buf, room);
  unsigned mode = code_mode(c);
  size_t pos = 0;
  uint32_t n = 0;
  while (pos < avail && n < k_max_block_insns) {
    x86::Insn& in = insns[n];
    in = x86::Insn{};
    x86::DecodeStatus st = x86::decode(buf + pos, avail - pos, mode, in);
    if (st == x86::DecodeStatus::Truncated) break;  // crosses the page/limit: step() runs it
    bind_handler(in, st);
    ++n;
    pos += in.len;
    if (st != x86::DecodeStatus::Ok || x86::insn_ends_block(in)) break;
  }
  if (!n) return nullptr;
  Block::Ptr b = Block::make(insns, n, buf, pos);
  b->key = key;
  b->gpa = gpa;
  b->validated_epoch = p.epoch;
  Block* raw = b.get();
  uint64_t pfn = gpa / k_page;
  p.page_blocks[pfn].push_back(raw);
  p.blocks[key] = std::move(b);
  p.fast[Cpu::Private::fast_index(key)] = raw;
  c.vm.mark_code_page(c, pfn);
  return raw;
}

// Are the block's bytes still what guest memory holds? (user space writes RAM
// directly, bypassing the code-page write tracking.)
bool block_current(Cpu& c, const Block& b) {
  const cpu::RamRegion* r = mmu_find_region(c, b.gpa);
  if (!r || b.gpa + b.nbytes > r->start.raw() + r->size) return false;
  return std::memcmp(r->hva + (b.gpa - r->start.raw()), b.bytes(), b.nbytes) == 0;
}

// The block starting at CS:EIP, or nullptr when the instruction there must be stepped.
Block* lookup_block(Cpu& c) {
  Cpu::Private& p = *c.priv;
  uint64_t lin = cs_linear(c);
  uint64_t gpa = mmu_code_gpa(c, lin);
  if (gpa == ~uint64_t(0) || gpa / k_page >= SoftVm::k_max_code_pfn) return nullptr;
  uint64_t key = (gpa << 1) | (c.code32() ? 1 : 0);
  Block* b = p.fast[Cpu::Private::fast_index(key)];
  if (!b || b->key != key) {
    auto it = p.blocks.find(key);
    b = it == p.blocks.end() ? nullptr : it->second.get();
    if (b) p.fast[Cpu::Private::fast_index(key)] = b;
  }
  if (b && b->validated_epoch != p.epoch) {
    if (block_current(c, *b)) {
      b->validated_epoch = p.epoch;
    } else {
      engine_invalidate_page(c, gpa / k_page);
      b = nullptr;
    }
  }
  if (!b) b = build_block(c, lin, gpa, key);
  return b;
}

// What a Block::Link is keyed by: the linear address of the next instruction
// (CS base included), the TLB set it translates through (CPL 3 or not) and
// the code size.
uint64_t chain_tag(const Cpu& c, uint64_t lin) {
  return lin | (uint64_t(c.cpl == 3) << 32) | (uint64_t(c.code32()) << 33);
}

// The block `prev` chained to for `tag`, or nullptr (then lookup_block). The
// same answer lookup_block would give: no block was invalidated since the
// link was made (so `to` is alive and still the cached block for its key),
// the TLB entry lookup_block would consult (mmu_code_gpa's fast path) still
// maps `lin` to the successor's page for execution, so a CR3 load, INVLPG or
// PTE change that went through a TLB flush or refill is seen, and the target
// is validated in this epoch (as lookup_block would, when the epoch moved).
Block* follow_link(Cpu& c, Block& prev, uint64_t tag, uint64_t lin) {
  Cpu::Private& p = *c.priv;
  for (Block::Link& l : prev.links) {
    if (l.tag != tag) continue;
    if (l.inval != p.inval) return nullptr;  // then `to` is alive
    const TlbEntry& e = c.tlb.entry(c.cpl == 3, lin);
    if (e.tag_exec != (lin & ~(k_page - 1)) || (e.gpa_page | (lin & (k_page - 1))) != l.to->gpa) return nullptr;
    if (l.epoch != p.epoch) [[unlikely]] {
      Block& to = *l.to;
      if (to.validated_epoch != p.epoch) {
        if (!block_current(c, to)) return nullptr;  // lookup_block invalidates and rebuilds it
        to.validated_epoch = p.epoch;
      }
      l.epoch = p.epoch;
    }
    return l.to;
  }
  return nullptr;
}

// `prev` went to `to` (just returned by lookup_block, so valid and validated
// in this epoch).
void make_link(const Cpu& c, Block& prev, uint64_t tag, Block* to) {
  const Cpu::Private& p = *c.priv;
  Block::Link* l = prev.links[0].tag == tag ? &prev.links[0] : prev.links[1].tag == tag ? &prev.links[1] : nullptr;
  if (!l) {
    l = &prev.links[prev.next_link];
    prev.next_link ^= 1;
  }
  *l = Block::Link{tag, to, p.inval, p.epoch};
}

enum class Step : uint8_t { Continue, Exit };

void on_fault(Cpu& c, const Fault& f) {
  c.mmio_log.reset();
  c.priv->pio.state = PendingIo::State::Idle;
  c.deliver_exception(f);
}

// One instruction with every per-instruction rule: interrupt shadow, debug
// hooks, trace.
Step step(Cpu& c) {
  Cpu::Private& p = *c.priv;
  const uint8_t shadow = c.interrupt_shadow;
  const bool dbg = debug_active(c);
  const bool tf = c.eflags_rest & fl::TF;
  try {
    x86::Insn in;
    decode_single(c, in);
    if (trace_config().insn) trace_insn(c, in);
    if (dbg) debug_before_insn(c);
    c.interrupt_shadow = 0;  // the instruction may start a new one (STI, MOV SS)
    in.fn(c, in);
    mmio_retire(c);
    if (dbg) debug_after_insn(c, tf);
  } catch (const Fault& f) {
    on_fault(c, f);
  } catch (const StopInsn&) {
    c.interrupt_shadow = shadow;
    p.stopped = true;
    return Step::Exit;
  } catch (const WaitInsn&) {
    c.interrupt_shadow = shadow;
    c.mmio_log.reset();
  }
  return c.exit_pending ? Step::Exit : Step::Continue;
}

// Runs `body` (a block's instructions) with the engine's rules for what they
// throw: a fault is delivered, StopInsn exits to user space with the
// instruction to re-execute, WaitInsn drops its MMIO record.
template <typename F>
Step run_guarded(Cpu& c, F&& body) {
  try {
    body();
  } catch (const Fault& f) {
    on_fault(c, f);
  } catch (const StopInsn&) {
    c.priv->stopped = true;
    return Step::Exit;
  } catch (const WaitInsn&) {
    c.mmio_log.reset();
  }
  return c.exit_pending ? Step::Exit : Step::Continue;
}

Step run_block(Cpu& c, const Block& b) {
  Cpu::Private& p = *c.priv;
  const x86::Insn* in = b.insns();
  const x86::Insn* const end = in + b.n;
  const uint64_t mask = (b.key & 1) ? 0xffffffffull : 0xffffull;
  p.block_stop = false;
  return run_guarded(c, [&] {
    for (; in != end; ++in) {
      const uint64_t expect = (c.rip + in->len) & mask;
      in->fn(c, *in);
      if (c.mmio_log.count) [[unlikely]]
        mmio_retire(c);
      if (c.exit_pending | p.block_stop) [[unlikely]]
        break;
      if (c.rip != expect) break;
    }
  });
}

// A block's compiled code (jit/jit.h), and the blocks it chains to, with
// run_block's rules. When a block's entry assumptions do not hold (its
// prologue bails at CS:EIP), the loop runs that block in the interpreter.
Step run_jit(Cpu& c, const jit::CodeHeader& h) {
  c.priv->block_stop = false;
  return run_guarded(c, [&] {
    if (!jit::enter(*c.priv->jit_arena, c, h)) [[unlikely]]
      c.priv->jit_interpret_next = true;
    if (c.mmio_log.count) [[unlikely]]
      mmio_retire(c);
  });
}

void compile_block(Cpu& c, Block& b) {
  Cpu::Private& p = *c.priv;
  bool full = false;
  uint32_t off = jit::compile(*p.jit_arena, c, b.insns(), b.n, b.gpa, full);
  if (full) {  // drop every block's code and start the arena again
    jit::reset(*p.jit_arena);
    for (auto& kv : p.blocks) kv.second->jit = 0;
    for (auto& d : p.dead) d->jit = 0;
    off = jit::compile(*p.jit_arena, c, b.insns(), b.n, b.gpa, full);
  }
  b.jit = off ? (Block::k_jit_compiled | off) : Block::k_jit_never;
}

// run_block, or the block's compiled code once it has started often enough
// (`tag`: chain_tag of the block's address, for the compiled code's dispatcher).
Step run_block_or_jit(Cpu& c, Block& b, uint64_t tag) {
  Cpu::Private& p = *c.priv;
  if (!p.jit_arena || !(b.key & 1)) return run_block(c, b);
  if (p.jit_interpret_next) [[unlikely]] {
    p.jit_interpret_next = false;
    return run_block(c, b);
  }
  if (!(b.jit & Block::k_jit_compiled)) [[unlikely]] {
    if (b.jit >= Block::k_jit_never || ++b.jit < p.jit_threshold) return run_block(c, b);
    compile_block(c, b);
    if (!(b.jit & Block::k_jit_compiled)) return run_block(c, b);
  }
  const jit::CodeHeader& h = jit::header(*p.jit_arena, b.jit & ~Block::k_jit_compiled);
  jit::remember(*p.jit_arena, tag, b.gpa, h, b.n);
  return run_jit(c, h);
}

void clear_dead(Cpu::Private& p) {
  p.dead.clear();
  if (p.jit_arena) jit::chain_state(*p.jit_arena).dead = 0;
}

bool irq_window_open(const Cpu& c) {
  return (c.eflags_rest & fl::IF) && !c.interrupt_shadow && !c.irq_queued;
}

}  // namespace

Cpu* engine_running_cpu() { return t_running; }

namespace jit {
int32_t private_block_stop_offset(const Cpu& c) {
  return int32_t(reinterpret_cast<const char*>(&c.priv->block_stop) - reinterpret_cast<const char*>(c.priv.get()));
}
}  // namespace jit

namespace {

// Blocks live in 2 MiB chunks the host may back with huge pages: the blocks a
// guest's hot path runs (an idle tick: hundreds) then cost a few TLB entries,
// not one per 4 KiB heap page (TLB misses are dear, above all under nested
// paging), and blocks decoded together sit together. Freed blocks are reused
// by size (64-byte classes); chunks go back to the host only at exit. Any
// thread (a vCPU's blocks are freed where it is destroyed).
class BlockArena {
 public:
  static BlockArena& get() {
    static BlockArena* a = new BlockArena;  // never destroyed: blocks may outlive static destructors
    return *a;
  }
  void* alloc(size_t size) {
    const size_t cls = size_class(size);
    std::lock_guard<std::mutex> g(m_lock);
    if (cls < m_free.size() && !m_free[cls].empty()) {
      void* p = m_free[cls].back();
      m_free[cls].pop_back();
      return p;
    }
    const size_t bytes = cls * k_cache_line;
    if (m_left < bytes) new_chunk();
    void* p = m_next;
    m_next += bytes;
    m_left -= bytes;
    return p;
  }
  void free(void* p, size_t size) {
    const size_t cls = size_class(size);
    std::lock_guard<std::mutex> g(m_lock);
    if (m_free.size() <= cls) m_free.resize(cls + 1);
    m_free[cls].push_back(p);
  }

 private:
  static constexpr size_t k_chunk = size_t(2) << 20;
  static size_t size_class(size_t size) { return (size + k_cache_line - 1) / k_cache_line; }
  void new_chunk() {
    const size_t len = 2 * k_chunk;  // room to align a chunk to its own size
    void* raw = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc();
    const uintptr_t lo = reinterpret_cast<uintptr_t>(raw);
    const uintptr_t start = (lo + k_chunk - 1) & ~(k_chunk - 1);
    if (start > lo) munmap(raw, start - lo);
    if (lo + len > start + k_chunk) munmap(reinterpret_cast<void*>(start + k_chunk), lo + len - start - k_chunk);
    madvise(reinterpret_cast<void*>(start), k_chunk, MADV_HUGEPAGE);
    m_next = reinterpret_cast<uint8_t*>(start);
    m_left = k_chunk;
  }

  std::mutex m_lock;
  uint8_t* m_next = nullptr;
  size_t m_left = 0;
  std::vector<std::vector<void*>> m_free;  // by size class
};

size_t block_size(uint32_t n, size_t nbytes) { return sizeof(Block) + n * sizeof(x86::Insn) + nbytes; }

}  // namespace

Block::Ptr Block::make(const x86::Insn* insns, uint32_t n, const uint8_t* bytes, size_t nbytes) {
  static_assert(std::is_trivially_copyable_v<x86::Insn> && std::is_trivially_destructible_v<x86::Insn>);
  static_assert(std::is_trivially_destructible_v<Block>);
  Ptr b(new (BlockArena::get().alloc(block_size(n, nbytes))) Block);
  b->n = n;
  b->nbytes = uint16_t(nbytes);
  std::memcpy(static_cast<void*>(b.get() + 1), insns, n * sizeof(x86::Insn));
  std::memcpy(reinterpret_cast<uint8_t*>(b.get() + 1) + n * sizeof(x86::Insn), bytes, nbytes);
  return b;
}

void Block::Free::operator()(Block* b) const { BlockArena::get().free(b, block_size(b->n, b->nbytes)); }

void engine_post(Cpu& c, uint64_t pfn, bool invalidate) {
  Cpu::Private& p = *c.priv;
  std::lock_guard<std::mutex> g(p.q_lock);
  (invalidate ? p.q_inval : p.q_revoke).push_back(pfn);
  p.q_pending.store(true, std::memory_order_release);
}

void engine_drain_requests(Cpu& c) {
  Cpu::Private& p = *c.priv;
  if (!p.q_pending.load(std::memory_order_acquire)) return;
  std::vector<uint64_t> inval, revoke;
  {
    std::lock_guard<std::mutex> g(p.q_lock);
    inval.swap(p.q_inval);
    revoke.swap(p.q_revoke);
    p.q_pending.store(false, std::memory_order_relaxed);
  }
  for (uint64_t pfn : revoke) c.tlb.revoke_write_pfn(pfn);
  for (uint64_t pfn : inval) engine_invalidate_page(c, pfn);
}

bool engine_write_hits_code(Cpu& c, uint64_t pfn, uint64_t gpa, uint32_t len) {
  const Cpu::Private& p = *c.priv;
  auto it = p.page_blocks.find(pfn);
  if (it == p.page_blocks.end() || it->second.empty()) return true;
  for (const Block* b : it->second)
    if (gpa < b->gpa + b->nbytes && b->gpa < gpa + len) return true;
  return false;
}

void engine_invalidate_page(Cpu& c, uint64_t pfn) {
  Cpu::Private& p = *c.priv;
  auto it = p.page_blocks.find(pfn);
  if (it == p.page_blocks.end()) return;
  ++p.inval;  // links to these blocks (from any block) must not be followed
  ++c.tlb.link_gen;
  for (Block* b : it->second) {
    if (!b->valid) continue;
    b->valid = false;
    size_t fi = Cpu::Private::fast_index(b->key);
    if (p.fast[fi] == b) p.fast[fi] = nullptr;
    auto bi = p.blocks.find(b->key);
    if (bi != p.blocks.end() && bi->second.get() == b) {
      p.dead.push_back(std::move(bi->second));  // may be running: freed at the next boundary
      if (p.jit_arena) jit::chain_state(*p.jit_arena).dead = 1;
      p.blocks.erase(bi);
    }
  }
  p.page_blocks.erase(it);
}

[[noreturn]] void Cpu::stop_for_exit() {
  exit_pending = true;
  throw StopInsn{};
}

SoftVcpu::SoftVcpu(SoftVm& vm, VcpuId id) : m_cpu(std::make_unique<Cpu>(vm, id)) {
  const jit::Config jc = jit::config();
  Cpu::Private& p = *m_cpu->priv;
  if (jc.enabled) p.jit_arena = jit::make_arena(jc.arena_size, *m_cpu);
  if (p.jit_arena) {
    p.jit_threshold = jc.threshold;
    jit::ChainState& cs = jit::chain_state(*p.jit_arena);
    cs.q_pending = &p.q_pending;
    cs.generation = vm.memory.generation_word();
    cs.mem_generation = &p.mem_generation;
    cs.inval = &p.inval;
    cs.epoch = &p.epoch;
    cs.link_gen = &m_cpu->tlb.link_gen;
    cs.block_stop = &p.block_stop;
  }
}
SoftVcpu::~SoftVcpu() = default;

cpu::VcpuExit SoftVcpu::run(cpu::RunControl& ctl) {
  // Blocks revalidate against RAM user space may have written since the last
  // KVM_RUN. Once per ioctl, not per wake from an in-kernel HLT sleep: there,
  // only an interrupt raised by user space (a DMA completion) marks RAM as
  // possibly rewritten (engine_local_interrupt), so an idle guest woken by its
  // in-kernel timer runs its cached blocks without re-checking them.
  ++m_cpu->priv->epoch;
  ++m_cpu->tlb.link_gen;
  if (m_cpu->local) [[unlikely]]  // in-kernel irqchip: HLT sleeps here (local_devices.cpp)
    return engine_run_with_local_devices(
        *m_cpu, ctl, [](void* s, cpu::RunControl& r) { return static_cast<SoftVcpu*>(s)->run_engine(r); }, this);
  return run_engine(ctl);
}

cpu::VcpuExit SoftVcpu::run_engine(cpu::RunControl& ctl) {
  Cpu& c = *m_cpu;
  Cpu::Private& p = *c.priv;
  struct Scope {
    Cpu& c;
    uint64_t insns = 0, blocks = 0;  // ANYKVM_STATS counters not yet added (trace.h)
    void flush_stats() {
      if (c.priv->jit_arena) {  // blocks entered by the compiled code's dispatcher
        jit::ChainState& cs = jit::chain_state(*c.priv->jit_arena);
        insns += cs.insns;
        blocks += cs.blocks;
        cs.insns = cs.blocks = 0;
      }
      stats_add(c.id, insns, blocks);
      insns = blocks = 0;
    }
    ~Scope() {
      flush_stats();
      t_running = nullptr;
      c.priv->ctl = nullptr;
    }
  } scope{c};
  t_running = &c;
  p.ctl = &ctl;
  c.pio_page = ctl.pio_page ? ctl.pio_page : p.pio_scratch;
  c.exit_pending = false;
  c.halted = false;  // KVM_EXIT_HLT already retired HLT; re-entry resumes after it
  clear_dead(p);
  mmu_sync(c);
  p.mem_generation = c.tlb.generation;
  engine_drain_requests(c);
  const bool trace_exits = trace_config().exits;
  const bool trace_insns = trace_config().insn;
  auto finish = [&]() -> cpu::VcpuExit {
    c.exit_pending = false;
    if (trace_exits) trace_exit(c, c.exit);
    return c.exit;
  };
  auto simple = [&](cpu::ExitReason r) -> cpu::VcpuExit {
    c.exit = cpu::VcpuExit{};
    c.exit.reason = r;
    if (r == cpu::ExitReason::Interrupted && ctl.kick) ctl.kick->store(false, std::memory_order_release);
    return finish();
  };

  // 1. Complete the instruction an exit interrupted (IN data / MMIO read data).
  if (p.stopped) {
    p.stopped = false;
    if (p.pio.state == PendingIo::State::Waiting) p.pio.state = PendingIo::State::Ready;
    mmio_reenter(c);
    Step s = step(c);
    if (!p.stopped) p.pio.state = PendingIo::State::Idle;
    if (s == Step::Exit) return finish();
  }
  // 2. Stop flags.
  if (ctl.stop_requested()) return simple(cpu::ExitReason::Interrupted);
  // 3. Queued events.
  if (c.nmi_pending && !c.nmi_masked && c.interrupt_shadow != 1) c.deliver_nmi();
  if (c.irq_queued && (c.eflags_rest & fl::IF) && !c.interrupt_shadow) {
    c.irq_queued = false;
    c.deliver_interrupt(c.irq_vector, false, c.rip);
  }
  if (c.exit_pending) return finish();

  // 4. Execute. The events polled at block boundaries are folded into one
  // branch; its slow path keeps the order of the checks.
  static volatile uint8_t s_no_immediate_exit = 0;
  static std::atomic<bool> s_no_kick{false};
  volatile uint8_t* const immediate_exit = ctl.immediate_exit ? ctl.immediate_exit : &s_no_immediate_exit;
  std::atomic<bool>* const kick = ctl.kick ? ctl.kick : &s_no_kick;
  std::atomic<bool>* const irq_attention = p.irq_attention;
  const cpu::MemoryMapSource& memory = c.vm.memory;
  const bool want_window = ctl.request_interrupt_window;
  if (p.jit_arena) {  // what the dispatcher of compiled code polls (jit::ChainState)
    jit::ChainState& cs = jit::chain_state(*p.jit_arena);
    cs.allowed = !trace_insns && !want_window;
    cs.immediate_exit = immediate_exit;
    cs.kick = kick;
    cs.irq_attention = irq_attention;
  }
  Block* prev = nullptr;  // the block that just ran (alive: `dead` is cleared only below)
  for (;;) {
    const bool events = *immediate_exit | kick->load(std::memory_order_acquire) |
                        (memory.generation() != p.mem_generation) | p.q_pending.load(std::memory_order_relaxed) |
                        irq_attention->load(std::memory_order_relaxed) | !p.dead.empty() | want_window;
    if (events) [[unlikely]] {
      scope.flush_stats();
      if (ctl.stop_requested()) return simple(cpu::ExitReason::Interrupted);
      if (memory.generation() != p.mem_generation) {
        mmu_sync(c);
        p.mem_generation = c.tlb.generation;
        ++p.epoch;
        ++c.tlb.link_gen;
      }
      if (p.q_pending.load(std::memory_order_relaxed)) engine_drain_requests(c);
      if (!p.dead.empty()) {
        clear_dead(p);
        prev = nullptr;
      }
      if (irq_attention->load(std::memory_order_relaxed)) {
        engine_local_interrupt(c);  // in-kernel irqchip (local_devices.cpp)
        if (c.exit_pending) return finish();
      }
      if (want_window && irq_window_open(c)) return simple(cpu::ExitReason::IrqWindowOpen);
    }

    if (c.interrupt_shadow | trace_insns | debug_active(c)) [[unlikely]] {
      prev = nullptr;
      if (step(c) == Step::Exit) return finish();
      continue;
    }
    const uint64_t lin = cs_linear(c);
    const uint64_t tag = chain_tag(c, lin);
    Block* b = prev ? follow_link(c, *prev, tag, lin) : nullptr;
    if (!b) [[unlikely]] {
      try {
        b = lookup_block(c);
      } catch (const Fault& f) {
        prev = nullptr;
        on_fault(c, f);
        if (c.exit_pending) return finish();
        continue;
      } catch (const StopInsn&) {
        p.stopped = true;
        return finish();
      }
      if (!b) {
        prev = nullptr;
        if (step(c) == Step::Exit) return finish();
        continue;
      }
      if (prev) make_link(c, *prev, tag, b);
    }
    scope.insns += b->n;
    ++scope.blocks;
    prev = b;
    // Where this block went last time is likely where it goes next: start
    // loading that block while this one runs (a prefetch of a stale link
    // cannot fault).
    __builtin_prefetch(b->links[0].to);
    __builtin_prefetch(reinterpret_cast<const char*>(b->links[0].to) + k_cache_line);
    if (run_block_or_jit(c, *b, tag) == Step::Exit) return finish();
  }
}

void SoftVcpu::complete_mmio_read(std::span<const uint8_t> data) { mmio_complete_read(*m_cpu, data); }

// ---- state ioctls ----

cpu::Regs SoftVcpu::get_regs() const {
  cpu::Regs r;
  r.gpr = m_cpu->gpr;
  r.rip = m_cpu->rip;
  r.rflags = m_cpu->eflags();
  return r;
}

void SoftVcpu::set_regs(const cpu::Regs& r) {
  Cpu& c = *m_cpu;
  bool tf_rf_changed = ((c.eflags_rest ^ uint32_t(r.rflags)) & (fl::TF | fl::RF)) != 0;
  c.gpr = r.gpr;
  c.rip = r.rip;
  c.set_eflags(uint32_t(r.rflags));
  if (tf_rf_changed) debug_dr7_changed(c);
}

cpu::SpecialRegs SoftVcpu::get_sregs() const {
  const Cpu& c = *m_cpu;
  cpu::SpecialRegs s;
  s.seg = c.seg;
  s.tr = c.tr;
  s.ldt = c.ldtr;
  s.gdt = c.gdtr;
  s.idt = c.idtr;
  s.cr0 = c.cr0;
  s.cr2 = c.cr2;
  s.cr3 = c.cr3;
  s.cr4 = c.cr4;
  s.cr8 = c.cr8;
  s.efer = c.efer;
  s.apic_base = c.apic_base;
  if (c.irq_queued) s.interrupt_bitmap[c.irq_vector / 64] |= uint64_t(1) << (c.irq_vector % 64);
  return s;
}

bool SoftVcpu::set_sregs(const cpu::SpecialRegs& s) {
  Cpu& c = *m_cpu;
  if ((s.cr0 & cr0::PG) && !(s.cr0 & cr0::PE)) return false;
  c.seg = s.seg;
  c.tr = s.tr;
  c.ldtr = s.ldt;
  c.gdtr = s.gdt;
  c.idtr = s.idt;
  c.cr0 = s.cr0;
  c.cr2 = s.cr2;
  c.cr3 = s.cr3;
  c.cr4 = s.cr4;
  c.cr8 = s.cr8;
  c.efer = s.efer;
  c.apic_base = s.apic_base;
  // CPL as KVM derives it (SS.DPL in protected mode).
  if (!c.protected_mode()) c.cpl = 0;
  else if (c.v86()) c.cpl = 3;
  else c.cpl = c.seg[2].dpl;
  for (unsigned w = 0; w < 4; ++w) {
    if (s.interrupt_bitmap[w]) {
      c.irq_queued = true;
      c.irq_vector = uint8_t(w * 64 + __builtin_ctzll(s.interrupt_bitmap[w]));
      break;
    }
  }
  mmu_state_loaded(c);
  return true;
}

cpu::FpuState SoftVcpu::get_fpu() const {
  cpu::FpuState f;
  fpu_to_fxsave(m_cpu->fpu, f.fxsave.data());
  f.xstate_bv = fpu_xinuse(m_cpu->fpu);
  f.xcr0 = m_cpu->xcr0;
  return f;
}

bool SoftVcpu::set_fpu(const cpu::FpuState& f) {
  fpu_from_fxsave(m_cpu->fpu, f.fxsave.data());
  return true;
}

void SoftVcpu::set_xsave(const cpu::FpuState& f) { fpu_set_xsave(m_cpu->fpu, f.fxsave.data(), f.xstate_bv); }

bool SoftVcpu::set_xcr0(uint64_t xcr0) {
  if (!fpu_xcr0_valid(*m_cpu, xcr0)) return false;
  m_cpu->xcr0 = xcr0;
  return true;
}

cpu::DebugRegs SoftVcpu::get_debugregs() const {
  cpu::DebugRegs d;
  d.db = m_cpu->dr;
  d.dr6 = m_cpu->dr6;
  d.dr7 = m_cpu->dr7;
  return d;
}

void SoftVcpu::set_debugregs(const cpu::DebugRegs& d) {
  m_cpu->dr = d.db;
  m_cpu->dr6 = d.dr6;
  m_cpu->dr7 = d.dr7;
  debug_dr7_changed(*m_cpu);
}

cpu::Events SoftVcpu::get_events() const {
  const Cpu& c = *m_cpu;
  cpu::Events e;
  e.interrupt_injected = c.irq_queued;
  e.interrupt_nr = c.irq_vector;
  e.interrupt_shadow = c.interrupt_shadow;
  e.nmi_pending = c.nmi_pending;
  e.nmi_masked = c.nmi_masked;
  return e;
}

void SoftVcpu::set_events(const cpu::Events& e) {
  Cpu& c = *m_cpu;
  c.irq_queued = e.interrupt_injected;
  c.irq_vector = e.interrupt_nr;
  c.interrupt_shadow = e.interrupt_shadow;
  c.nmi_pending = e.nmi_pending || e.nmi_injected;
  c.nmi_masked = e.nmi_masked;
  if (e.exception_injected) {
    // Delivered now, as the next entry would (KVM injects before running).
    if (e.exception_nr == uint8_t(Vec::PF)) c.tlb.pf_addr = c.cr2;
    Fault f{Vec(e.exception_nr), e.exception_has_error_code, e.exception_error_code};
    mmu_sync(c);
    c.deliver_exception(f);
  }
}

cpu::MpState SoftVcpu::get_mp_state() const { return m_cpu->mp_state; }
void SoftVcpu::set_mp_state(cpu::MpState s) { m_cpu->mp_state = s; }

void SoftVcpu::accept_events() {
  if (m_cpu->local) engine_accept_events(*m_cpu);
}

bool SoftVcpu::get_msr(uint32_t index, uint64_t& value) const { return msr_read(*m_cpu, index, value, true); }

bool SoftVcpu::set_msr(uint32_t index, uint64_t value) {
  constexpr uint32_t k_msr_efer = 0xc0000080;
  bool ok = msr_write(*m_cpu, index, value, true);
  if (ok && index == k_msr_efer) mmu_state_loaded(*m_cpu);
  return ok;
}

void SoftVcpu::set_cpuid(std::vector<cpu::CpuidEntry> entries) { m_cpu->cpuid_table = std::move(entries); }

bool SoftVcpu::queue_interrupt(uint8_t vector) {
  if (m_cpu->irq_queued) return false;
  m_cpu->irq_queued = true;
  m_cpu->irq_vector = vector;
  return true;
}

void SoftVcpu::queue_nmi() { m_cpu->nmi_pending = true; }

bool SoftVcpu::ready_for_interrupt_injection() const { return irq_window_open(*m_cpu); }
bool SoftVcpu::if_flag() const { return m_cpu->eflags_rest & fl::IF; }
uint64_t SoftVcpu::apic_base() const { return m_cpu->apic_base; }
uint64_t SoftVcpu::cr8() const { return m_cpu->cr8; }
void SoftVcpu::set_cr8(uint64_t v) { m_cpu->cr8 = v; }

void SoftVcpu::attach_local_devices(cpu::LocalDevices* d) {
  m_cpu->local = d;
  m_cpu->priv->irq_attention = d ? &d->attention : &g_no_irq_attention;
}

}  // namespace anykvm::soft
