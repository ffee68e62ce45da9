// The software engine's vCPU: the KVM_RUN loop over cached decoded blocks and
// the state ioctls mapped onto Cpu fields (cpu/backend.h VcpuBackend).
// Cpu::Private holds the engine-private per-vCPU state: the decoded-block
// cache (keyed by guest-physical address of the first byte + code size), the
// pending port-I/O record for IN/INS completion, and the cross-vCPU code
// invalidation queue. vCPU thread only, except Private::q_* (guarded by q_lock).
#pragma once
#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cpu/backend.h"
#include "cpu/soft/cpu.h"
#include "cpu/soft/jit/jit.h"

namespace anykvm::soft {

// A run of decoded instructions inside one guest-physical page. One
// allocation holds the header, the links, the instructions and the decoded
// bytes (Block::make: cache-line aligned, from huge-page chunks), so entering
// a block touches neighbouring cache lines, not a header and then a separate
// array (an idle guest's tick runs from a cold cache).
struct Block {
  // Where execution went after this block (block chaining): the successor is
  // taken without the block-cache lookup when CS:EIP gives the same linear
  // address at the same CPL and code size, the TLB still maps that address to
  // the successor's page for execution, and no block was invalidated since
  // the link was made (so `to` is alive); a link made before an epoch bump
  // revalidates `to` as lookup_block would.
  struct Link {
    uint64_t tag = ~uint64_t(0);  // chain_tag(): linear address | CPL 3 | code32
    Block* to = nullptr;
    uint64_t inval = 0;           // Private::inval when made
    uint32_t epoch = 0;           // Private::epoch when `to` was last validated through it
  };
  struct Free {
    void operator()(Block* b) const;
  };
  using Ptr = std::unique_ptr<Block, Free>;

  uint64_t key = 0;            // (gpa << 1) | code32
  uint64_t gpa = 0;            // first byte
  uint32_t validated_epoch = 0;
  uint32_t n = 0;              // instructions
  uint16_t nbytes = 0;         // decoded bytes (at most a page)
  bool valid = true;
  uint8_t next_link = 0;       // the slot the next new successor replaces
  // Compiled code (jit/jit.h): k_jit_compiled | arena offset; below that, the
  // number of times the block started (k_jit_never: not compilable).
  uint32_t jit = 0;
  static constexpr uint32_t k_jit_compiled = 0x80000000u, k_jit_never = 0x7fffffffu;
  Link links[2];

  // The n instructions follow the header; the decoded bytes (for validation
  // after user-space writes) follow them.
  const x86::Insn* insns() const { return reinterpret_cast<const x86::Insn*>(this + 1); }
  const uint8_t* bytes() const { return reinterpret_cast<const uint8_t*>(insns() + n); }
  static Ptr make(const x86::Insn* insns, uint32_t n, const uint8_t* bytes, size_t nbytes);
};
static_assert(sizeof(Block) % alignof(x86::Insn) == 0);
static_assert(sizeof(Block) == 96, "header and first link in one cache line, the second link and the first instruction's handler in the next");

// An IN/INS that exited to user space: the data arrives in the PIO page and the
// instruction re-executes on the next KVM_RUN.
struct PendingIo {
  enum class State : uint8_t { Idle, Waiting, Ready };
  State state = State::Idle;
  uint16_t port = 0;
  uint8_t size = 0;
  uint32_t count = 0;
};

// What Private::irq_attention points at while no irqchip is attached.
inline std::atomic<bool> g_no_irq_attention{false};

struct Cpu::Private {
  const cpu::RunControl* ctl = nullptr;  // during run()
  // LocalDevices::attention of the attached irqchip (or an always-false flag):
  // one relaxed load per block boundary.
  std::atomic<bool>* irq_attention = &g_no_irq_attention;
  alignas(8) uint8_t pio_scratch[4096] = {};  // PIO data when the caller gave no page
  PendingIo pio;
  bool stopped = false;     // the last run() ended with StopInsn: re-execute first
  bool block_stop = false;  // the running block's page was written: stop after this instruction

  // Block compiler (nullptr: off, or the host has no executable memory).
  std::unique_ptr<jit::Arena, void (*)(jit::Arena*)> jit_arena{nullptr, nullptr};
  uint32_t jit_threshold = 0;
  bool jit_interpret_next = false;  // a compiled block's prologue bailed: interpret the next block

  // Block cache.
  static constexpr size_t k_fast = 8192;
  std::array<Block*, k_fast> fast{};
  std::unordered_map<uint64_t, Block::Ptr> blocks;
  std::unordered_map<uint64_t, std::vector<Block*>> page_blocks;  // pfn -> blocks on it
  std::vector<Block::Ptr> dead;  // invalidated while possibly running; freed at a boundary
  uint32_t epoch = 1;       // bumped at each KVM_RUN entry and memory-map change: blocks revalidate
  // Bumped when blocks are invalidated: every Block::Link goes stale. 64 bits:
  // a link whose count came round again would point at freed memory.
  uint64_t inval = 0;
  uint64_t mem_generation = 0;

  // Cross-vCPU requests (another vCPU wrote a code page / made a page code).
  std::mutex q_lock;
  std::vector<uint64_t> q_inval;   // pfns whose blocks must go
  std::vector<uint64_t> q_revoke;  // pfns whose TLB write tags must go
  std::atomic<bool> q_pending{false};

  // Key bit 0 is the code size: the index mixes the page offset with the frame number.
  static size_t fast_index(uint64_t key) { return ((key >> 1) ^ (key >> 13)) & (k_fast - 1); }
};

class SoftVcpu final : public cpu::VcpuBackend {
 public:
  SoftVcpu(SoftVm& vm, VcpuId id);
  ~SoftVcpu() override;

  cpu::VcpuExit run(cpu::RunControl& ctl) override;
  void complete_mmio_read(std::span<const uint8_t> data) override;

  cpu::Regs get_regs() const override;
  void set_regs(const cpu::Regs& r) override;
  cpu::SpecialRegs get_sregs() const override;
  bool set_sregs(const cpu::SpecialRegs& s) override;
  cpu::FpuState get_fpu() const override;
  bool set_fpu(const cpu::FpuState& f) override;
  void set_xsave(const cpu::FpuState& f) override;
  bool set_xcr0(uint64_t xcr0) override;
  cpu::DebugRegs get_debugregs() const override;
  void set_debugregs(const cpu::DebugRegs& d) override;
  cpu::Events get_events() const override;
  void set_events(const cpu::Events& e) override;
  cpu::MpState get_mp_state() const override;
  void set_mp_state(cpu::MpState s) override;
  void accept_events() override;
  bool get_msr(uint32_t index, uint64_t& value) const override;
  bool set_msr(uint32_t index, uint64_t value) override;
  void set_cpuid(std::vector<cpu::CpuidEntry> entries) override;
  bool queue_interrupt(uint8_t vector) override;
  void queue_nmi() override;
  bool ready_for_interrupt_injection() const override;
  bool if_flag() const override;
  uint64_t apic_base() const override;
  uint64_t cr8() const override;
  void set_cr8(uint64_t v) override;
  void attach_local_devices(cpu::LocalDevices* d) override;

  Cpu& cpu() { return *m_cpu; }

 private:
  cpu::VcpuExit run_engine(cpu::RunControl& ctl);
  std::unique_ptr<Cpu> m_cpu;
};

// Engine internals shared with soft_vm.cpp.
void engine_invalidate_page(Cpu& c, uint64_t pfn);
// Could [gpa, gpa+len) on page pfn change a block this vCPU decoded there?
// (Also true when it has none there: the page is no longer code for it.)
bool engine_write_hits_code(Cpu& c, uint64_t pfn, uint64_t gpa, uint32_t len);
void engine_drain_requests(Cpu& c);
void engine_post(Cpu& c, uint64_t pfn, bool invalidate);
// The vCPU currently inside run() on this thread (nullptr outside).
Cpu* engine_running_cpu();
// local_devices.cpp: an in-kernel irqchip's interrupt at a block boundary
// (IF=1, no shadow), and KVM_RUN with HLT sleeping inside it.
void engine_local_interrupt(Cpu& c);
// KVM_GET_MP_STATE: accept the INIT/SIPI the LAPIC latched (local_devices.cpp).
void engine_accept_events(Cpu& c);
cpu::VcpuExit engine_run_with_local_devices(Cpu& c, cpu::RunControl& ctl,
                                            cpu::VcpuExit (*run_engine)(void*, cpu::RunControl&), void* self);

}  // namespace anykvm::soft
