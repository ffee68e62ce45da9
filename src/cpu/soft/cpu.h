// The software engine's CPU: architectural state plus the services every
// instruction handler uses (memory access, flags, stack, faults, exits).
// Areas: exec/ (instruction families), mmu/ (segmentation checks, paging, TLB,
// memory access), events/ (exception and interrupt delivery, task switch),
// fpu/ (x87, MMX, SSE). vCPU thread only.
//
// Two rules every handler follows, because they make faults precise and MMIO
// restartable (DESIGN.md "MMIO is an exit, completed on re-entry"):
//  1. A guest fault is `throw Fault{...}`; an access that needs an exit to user
//     space before the instruction can finish is `throw StopInsn{}`.
//  2. Do every memory access (reads *and* writes) before committing register
//     state (GPRs, RIP, flags, segment registers). An instruction abandoned by a
//     throw is re-executed from its first byte; the per-instruction MMIO log
//     (MmioLog) then replays completed MMIO reads and skips completed writes.
#pragma once
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "cpu/arch_state.h"
#include "cpu/backend.h"
#include "cpu/memory.h"
#include "cpu/soft/fpu/fpu_state.h"
#include "cpu/soft/mmu/tlb.h"
#include "x86/decode/insn.h"

namespace anykvm::soft {

using cpu::Segment;
using x86::Insn;

// Exception vectors (SDM vol. 3, 6.3.1).
enum class Vec : uint8_t {
  DE = 0, DB = 1, NMI = 2, BP = 3, OF = 4, BR = 5, UD = 6, NM = 7, DF = 8,
  TS = 10, NP = 11, SS = 12, GP = 13, PF = 14, MF = 16, AC = 17, MC = 18, XM = 19,
};

// A guest fault raised inside an instruction. Delivered through the IDT by
// events/ (with double/triple-fault escalation).
struct Fault {
  Vec vector;
  bool has_error_code = false;
  uint32_t error_code = 0;
};
inline Fault fault(Vec v) { return Fault{v, false, 0}; }
inline Fault fault(Vec v, uint32_t ec) { return Fault{v, true, ec}; }

// Abandon the current instruction without changing state: an exit is pending
// (MMIO read, IN, a second MMIO access) and the instruction will be re-executed
// on the next KVM_RUN.
struct StopInsn {};

// The instruction waits without changing state (x87 FERR# freeze with
// CR0.NE = 0): the thrower has set a KVM_EXIT_HLT-like halt (`halted`, exit
// pending); the vCPU sleeps until an interrupt and then re-executes it.
struct WaitInsn {};

// EFLAGS bits (SDM vol. 1, 3.4.3).
namespace fl {
constexpr uint32_t CF = 1u << 0, PF = 1u << 2, AF = 1u << 4, ZF = 1u << 6, SF = 1u << 7, TF = 1u << 8,
                   IF = 1u << 9, DF = 1u << 10, OF = 1u << 11, IOPL = 3u << 12, NT = 1u << 14, RF = 1u << 16,
                   VM = 1u << 17, AC = 1u << 18, VIF = 1u << 19, VIP = 1u << 20, ID = 1u << 21;
constexpr uint32_t ARITH = CF | PF | AF | ZF | SF | OF;
constexpr uint32_t FIXED1 = 1u << 1;
}  // namespace fl

namespace cr0 {
constexpr uint64_t PE = 1u << 0, MP = 1u << 1, EM = 1u << 2, TS = 1u << 3, ET = 1u << 4, NE = 1u << 5,
                   WP = 1u << 16, AM = 1u << 18, NW = 1u << 29, CD = 1u << 30, PG = 1u << 31;
}
namespace cr4 {
constexpr uint64_t VME = 1u << 0, PVI = 1u << 1, TSD = 1u << 2, DE = 1u << 3, PSE = 1u << 4, PAE = 1u << 5,
                   MCE = 1u << 6, PGE = 1u << 7, PCE = 1u << 8, OSFXSR = 1u << 9, OSXMMEXCPT = 1u << 10,
                   OSXSAVE = 1u << 18;
}
namespace efer {
constexpr uint64_t SCE = 1u << 0, LME = 1u << 8, LMA = 1u << 10, NXE = 1u << 11;
}

// Lazy arithmetic flags: the last flag-setting operation is remembered and
// CF/PF/AF/ZF/SF/OF are computed only when read (exec/flags.h implements).
enum class FlagOp : uint8_t {
  None,  // `lf_res` holds materialized OSZAPC bits (in `lf_flags`)
  Add, Adc, Sub, Sbb, Logic, Inc, Dec, Neg,
};

struct LazyFlags {
  FlagOp op = FlagOp::None;
  uint8_t size = 4;     // operand size in bytes
  uint64_t dst = 0;     // first source
  uint64_t src = 0;     // second source
  uint64_t res = 0;     // result
  uint32_t flags = 0;   // materialized OSZAPC when op == None; carry-in for Inc/Dec (CF kept)
};

// Per-instruction record of MMIO/PIO operations already exchanged with user
// space, so a re-executed instruction replays reads and skips writes.
struct MmioLog {
  struct Op {
    uint64_t gpa = 0;
    uint8_t len = 0;
    bool write = false;
    bool done = false;  // a read's data has arrived, or a write was emitted
    uint8_t data[8] = {};
  };
  std::array<Op, 8> ops{};
  uint8_t count = 0;   // ops recorded for the current instruction
  uint8_t cursor = 0;  // next op to match during (re-)execution
  bool posted_write_pending = false;  // exit with ops[count-1] once the instruction retires
  void reset() { count = cursor = 0; posted_write_pending = false; }
};

class SoftVm;

class Cpu {
 public:
  Cpu(SoftVm& vm, VcpuId id);

  // ---- architectural state (handlers access directly) ----
  std::array<uint64_t, 16> gpr{};
  uint64_t rip = 0;
  uint32_t eflags_rest = fl::FIXED1;  // every EFLAGS bit except OSZAPC (which live in `lf`)
  LazyFlags lf{};
  std::array<Segment, 6> seg{};  // cpu::SegReg order: ES CS SS DS FS GS
  Segment ldtr{}, tr{};
  cpu::DescriptorTable gdtr{}, idtr{};
  uint64_t cr0 = 0x60000010, cr2 = 0, cr3 = 0, cr4 = 0, cr8 = 0, efer = 0, xcr0 = 1;
  uint8_t cpl = 0;
  std::array<uint64_t, 4> dr{};
  uint64_t dr6 = 0xffff0ff0, dr7 = 0x400;
  FpuUnit fpu{};

  // MSR-backed state (events/ and exec/system own the semantics).
  uint64_t apic_base = 0xfee00900;
  uint64_t sysenter_cs = 0, sysenter_esp = 0, sysenter_eip = 0;
  uint64_t pat = 0x0007040600070406ull;
  uint64_t misc_enable = 1;  // fast strings
  uint64_t tsc_offset = 0;   // guest TSC = host-monotonic-derived count + offset
  uint64_t star = 0, lstar = 0, cstar = 0, fmask = 0, kernel_gs_base = 0, tsc_aux = 0;
  uint64_t mtrr_def_type = 0;
  std::array<uint64_t, 16> mtrr_var{};    // 0x200..0x20f
  std::array<uint64_t, 11> mtrr_fixed{};  // 0x250, 0x258, 0x259, 0x268..0x26f
  uint64_t mcg_status = 0, mcg_ctl = 0;
  std::array<uint64_t, 40> mc_banks{};    // 0x400..0x427
  uint64_t kvm_system_time = 0, kvm_wall_clock = 0;  // MSRs 0x12/0x11 (stored only)

  // Interrupt/exception event state.
  uint8_t interrupt_shadow = 0;  // 1 = MOV SS/POP SS, 2 = STI; cleared after the next instruction
  bool nmi_masked = false;       // between NMI delivery and the next IRET
  bool nmi_pending = false;
  bool irq_queued = false;       // KVM_INTERRUPT vector waiting for the next entry
  uint8_t irq_vector = 0;
  bool halted = false;
  bool ferr = false;  // x87 FERR# asserted towards the in-kernel chipset (fpu_pending_error)
  cpu::MpState mp_state = cpu::MpState::Runnable;
  std::vector<cpu::CpuidEntry> cpuid_table;

  // ---- exits ----
  cpu::VcpuExit exit{};      // filled when an instruction needs user space
  bool exit_pending = false; // leave the run loop after the current instruction
  MmioLog mmio_log{};
  uint8_t* pio_page = nullptr;  // kvm_run + 4096, valid during run()
  // In-kernel devices (an irqchip): PIO/MMIO/MSRs they take never exit.
  cpu::LocalDevices* local = nullptr;

  // ---- services ----
  // Memory through a segment: limit/type checks (#GP/#SS), paging (#PF),
  // memslots, MMIO exits. mmu/ implements.
  template <typename T> T read(uint8_t seg, uint64_t offset);
  template <typename T> void write(uint8_t seg, uint64_t offset, T value);
  // Check that [offset, offset+len) is writable (used before multi-part writes so
  // a fault happens before anything changes).
  void check_write(uint8_t seg, uint64_t offset, uint32_t len);
  void check_read(uint8_t seg, uint64_t offset, uint32_t len);
  // Linear-address access with an explicit privilege: `user` = CPL-3 checks.
  // System-structure accesses (GDT/IDT/TSS) pass user = false.
  template <typename T> T read_linear(uint64_t lin, bool user);
  template <typename T> void write_linear(uint64_t lin, T value, bool user);
  // Instruction fetch for the decoder: copies up to n bytes at CS:eip; returns
  // the number available before a fault (the decoder faults only if it needs more).
  size_t fetch_code(uint64_t lin, uint8_t* buf, size_t n);
  // Translate a linear address for an access; throws #PF. Returns a guest-physical address.
  uint64_t translate(uint64_t lin, bool write, bool user, bool exec);
  // Raw guest-physical access (page-table walks, DMA-like engine accesses).
  // Returns nullptr for MMIO (no slot).
  uint8_t* phys_ptr(uint64_t gpa, bool write);

  void tlb_flush_all();
  void tlb_flush_nonglobal();
  void tlb_flush_page(uint64_t lin);

  // Stack (SS.B selects ESP vs SP).
  template <typename T> void push(T v);
  template <typename T> T pop();

  // Flags (exec/flags.h).
  uint32_t eflags() const;         // full EFLAGS, lazy bits materialized
  void set_eflags(uint32_t v);     // raw write of every bit (no privilege checks)
  bool get_cf() const;
  bool get_zf() const;
  bool get_sf() const;
  bool get_of() const;
  bool get_pf() const;
  bool get_af() const;
  void set_cf(bool v);

  // Mode queries.
  bool protected_mode() const { return cr0 & cr0::PE; }
  bool v86() const { return eflags_rest & fl::VM; }
  bool paging() const { return cr0 & cr0::PG; }
  bool long_mode() const { return efer & efer::LMA; }
  bool code32() const { return seg[1].db; }
  bool stack32() const { return seg[2].db; }
  uint32_t iopl() const { return (eflags_rest >> 12) & 3; }

  // Segment register load with all checks for the current mode (mmu/segment.cpp).
  void load_segment(uint8_t seg_index, uint16_t selector);
  // Real/v86-mode style load (base = sel << 4), keeping limit and attributes.
  void load_segment_real(uint8_t seg_index, uint16_t selector);

  // Events (events/): deliver through IDT/IVT with escalation; a triple fault
  // sets exit Shutdown.
  void deliver_exception(const Fault& f);
  void deliver_interrupt(uint8_t vector, bool software, uint64_t next_rip);
  void deliver_nmi();

  // Exit helpers (mmio_log semantics, see MmioLog).
  [[noreturn]] void stop_for_exit();

  // General-register views with x86 aliasing (AH..BH for 8-bit regs 4-7 without REX).
  template <typename T> T reg(unsigned r) const;
  template <typename T> void set_reg(unsigned r, T v);  // 32-bit writes zero-extend in 64-bit mode only

  SoftVm& vm;
  VcpuId id;
  // Software TLB (mmu/ owns the type and its semantics).
  Tlb tlb;
  // Engine-private pieces (block cache, ...) hang off here; owned by their areas.
  struct Private;
  std::unique_ptr<Private> priv;
  ~Cpu();
};

// ---- inline GPR helpers ----
template <typename T>
inline T Cpu::reg(unsigned r) const {
  if constexpr (sizeof(T) == 1) {
    // Without REX, 8-bit register numbers 4-7 are AH, CH, DH, BH.
    if (r >= 4 && r < 8) return static_cast<T>(gpr[r - 4] >> 8);
    return static_cast<T>(gpr[r]);
  } else {
    return static_cast<T>(gpr[r]);
  }
}

template <typename T>
inline void Cpu::set_reg(unsigned r, T v) {
  if constexpr (sizeof(T) == 1) {
    if (r >= 4 && r < 8) {
      gpr[r - 4] = (gpr[r - 4] & ~0xff00ull) | (uint64_t(uint8_t(v)) << 8);
    } else {
      gpr[r] = (gpr[r] & ~0xffull) | uint8_t(v);
    }
  } else if constexpr (sizeof(T) == 2) {
    gpr[r] = (gpr[r] & ~0xffffull) | uint16_t(v);
  } else if constexpr (sizeof(T) == 4) {
    // Outside 64-bit mode the upper half is architecturally undefined/unreachable;
    // zero-extending matches 64-bit mode and is what hardware does.
    gpr[r] = uint32_t(v);
  } else {
    gpr[r] = uint64_t(v);
  }
}

}  // namespace anykvm::soft

// Inline service implementations, by area.
#include "cpu/soft/exec/flags_inl.h"
#include "cpu/soft/exec/stack_inl.h"
#include "cpu/soft/mmu/access_inl.h"
