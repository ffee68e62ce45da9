// The local APIC of one vCPU (SDM vol. 3, chapter 10): the xAPIC register page
// (MMIO at IA32_APIC_BASE) and the x2APIC MSRs 0x800-0x8ff, TPR/PPR/APR,
// IRR/ISR/TMR, EOI with broadcast to the IOAPICs for level-triggered vectors,
// LDR/DFR logical destinations, SVR software enable, the error register, ICR
// IPIs (fixed, lowest priority, SMI, NMI, INIT, SIPI, shorthands), the six
// LVTs KVM has (no CMCI), and the timer in one-shot, periodic and TSC-deadline
// modes (the last only if the guest's CPUID has it) with a 1 GHz bus clock like
// KVM's. Left out: focus processor checking, directed EOI, remote read; INIT
// level de-assert is ignored (as on P4 and later).
// State is the register page itself: LapicState is Linux's struct kvm_lapic_state.
//
// Threading: the vCPU thread drives it; IPIs and IOAPIC messages from other
// threads arrive through accept(). Calls re-enter across devices (an ICR
// write delivers to other Lapics and to itself, an EOI reaches the IOAPIC,
// which delivers to Lapics), so the simple correct wiring is one irqchip lock
// per VM held around every call into any device; ApicBus callbacks run with
// it held. Per-device locks would need the bus to queue messages instead.
#pragma once
#include <atomic>
#include <cstdint>
#include <optional>

#include "base/types.h"
#include "devices/apic_bus.h"
#include "devices/edges.h"
#include "devices/lapic_regs.h"

namespace anykvm::devices {

constexpr unsigned k_lapic_state_size = 0x400;  // KVM_APIC_REG_SIZE

struct LapicState {
  uint8_t regs[k_lapic_state_size];
};

// Events the LAPIC hands to the vCPU instead of a vector.
enum class LapicEvent : uint8_t {
  Nmi = 0x01,
  Init = 0x02,
  StartUp = 0x04,  // with sipi_vector()
  Smi = 0x08,
  ExtInt = 0x10,  // an ExtINT message: the vector comes from the PIC's INTA
};

class Lapic {
 public:
  Lapic(VcpuId id, const Clock& clock, ApicBus& bus);

  // ---- IA32_APIC_BASE and mode ----
  uint64_t apic_base() const { return m_apic_base; }
  // WRMSR IA32_APIC_BASE. false = #GP (an invalid mode transition, SDM 10.12.5;
  // reserved bits). `host` (KVM_SET_SREGS/MSRS) may set any valid mode directly.
  [[nodiscard]] bool set_apic_base(uint64_t value, bool host = false);
  bool hw_enabled() const { return m_apic_base & bits(ApicBaseBits::Enable); }
  bool x2apic_mode() const { return m_apic_base & bits(ApicBaseBits::X2apic); }
  bool sw_enabled() const { return reg(ApicReg::Svr) & bits(Svr::SoftwareEnable); }
  // The xAPIC page answers MMIO only while enabled and not in x2APIC mode.
  bool mmio_enabled() const { return hw_enabled() && !x2apic_mode(); }
  Gpa mmio_base() const { return Gpa(m_apic_base & k_apic_base_address_mask); }
  uint32_t apic_id() const;

  // ---- xAPIC MMIO: `offset` within the page; len 1, 2 or 4 inside one register ----
  uint32_t mmio_read(uint32_t offset, unsigned len);
  void mmio_write(uint32_t offset, uint32_t value, unsigned len);

  // ---- x2APIC MSRs 0x800-0x8ff; nullopt / false = #GP ----
  static bool is_x2apic_msr(uint32_t msr) { return msr >= k_x2apic_msr_base && msr <= k_x2apic_msr_last; }
  [[nodiscard]] std::optional<uint64_t> read_msr(uint32_t msr);
  [[nodiscard]] bool write_msr(uint32_t msr, uint64_t value);

  // ---- CR8 (TPR bits 7:4) ----
  uint8_t cr8() const { return uint8_t(reg(ApicReg::Tpr) >> 4); }
  void set_cr8(uint8_t value);

  // ---- TSC deadline (IA32_TSC_DEADLINE, MSR 0x6e0) ----
  // The caller passes the guest TSC now; tsc_khz converts cycles to ns.
  // Both read as 0 / ignore the write unless the APIC is enabled and in
  // TSC-deadline mode (Linux's kvm_get/set_lapic_tscdeadline_msr).
  void set_tsc_khz(uint32_t khz) { m_tsc_khz = khz ? khz : 1; }
  uint64_t tsc_deadline() const;
  void set_tsc_deadline(uint64_t deadline, uint64_t guest_tsc_now);
  // Whether the guest's CPUID.1:ECX[24] lets it select TSC-deadline mode
  // (SDM 10.5.4.1; Linux's timer_mode_mask, set by KVM_SET_CPUID2): without it
  // only one-shot and periodic are writable. A bare Lapic allows it. Any thread
  // (atomic): KVM_SET_CPUID2 sets it under the vCPU's mutex only, as Linux.
  void set_tsc_deadline_mode_allowed(bool on) {
    m_timer_mode_mask.store(on ? bits(Lvt::TimerModeMask) : uint32_t(TimerMode::Periodic) << k_lvt_timer_mode_shift,
                            std::memory_order_relaxed);
  }

  // ---- the bus side ----
  bool matches(const ApicMessage& msg, const Lapic* source) const;
  // Accept a message that matched; false if dropped or coalesced.
  bool accept(const ApicMessage& msg);
  // A fixed interrupt into IRR (and TMR for level). false if coalesced or illegal.
  bool accept_interrupt(Vector vector, TriggerMode trigger);
  uint8_t arbitration_priority() const;

  // ---- the CPU side ----
  // Expires the timer (reads the clock), then the highest IRR vector whose
  // priority class is above PPR.
  std::optional<Vector> has_interrupt();
  // INTA: IRR -> ISR for that vector; the spurious vector if none is left.
  Vector acknowledge();
  uint8_t pending_events() const { return m_events; }
  bool take_event(LapicEvent e);  // test-and-clear
  uint8_t sipi_vector() const { return m_sipi_vector; }
  // LINT0/LINT1 input pins, routed through their LVTs.
  void set_lint(unsigned pin, bool level);
  // The PIC's INT reaches the CPU directly while the APIC is globally
  // disabled, or through LINT0 programmed unmasked as ExtINT (virtual wire).
  bool accepts_pic_interrupts() const;

  // ---- the timer ----
  // Deliver an expired timer interrupt (reads the clock). Idempotent.
  void update();
  // When update() next has something to do, for the run loop's sleep.
  std::optional<Nanoseconds> next_timer_deadline() const;

  // ---- state ----
  // KVM_GET_LAPIC: the page with the current count filled in. Without the
  // x2APIC API format (KVM_CAP_X2APIC_API), an x2APIC ID is stored shifted
  // to bits 31:24 as Linux does.
  LapicState get_state() const;
  // KVM_SET_LAPIC: restores the page; a running timer resumes from the
  // saved current count. Call after the APIC base (sregs) is restored.
  void set_state(const LapicState& s);
  void set_x2apic_api_format(bool on) { m_x2apic_format = on; }
  // Power-on/RESET (IA32_APIC_BASE back to enabled xAPIC at 0xfee00000).
  void reset(bool bsp);
  // INIT: every register back to its reset value except the ID and the base.
  void init();

 private:
  uint32_t& reg(ApicReg r) { return m_regs[uint32_t(r) >> 2]; }
  uint32_t reg(ApicReg r) const { return m_regs[uint32_t(r) >> 2]; }
  uint32_t& reg_at(uint32_t offset) { return m_regs[offset >> 2]; }
  bool vec_bit(ApicReg base, unsigned v) const;
  void set_vec_bit(ApicReg base, unsigned v, bool on);
  int highest_vec(ApicReg base) const;

  void reset_registers();
  void update_ppr();
  void set_x2apic_id_and_ldr();
  bool read_reg(uint32_t offset, uint32_t& value);  // false: no such register
  void write_reg(uint32_t offset, uint32_t value);
  void write_lvt(ApicReg r, uint32_t value);
  void do_eoi();
  void send_ipi();
  void report_error(Esr e);
  void deliver_lvt(ApicReg r);
  bool lvt_masked(ApicReg r) const { return reg(r) & bits(Lvt::Masked); }

  // Timer.
  TimerMode timer_mode() const;
  uint32_t divisor() const;
  uint32_t current_count() const;
  void start_timer(uint32_t count_now);
  void stop_timer() { m_timer_armed = false; }

  VcpuId m_vcpu_id;
  const Clock& m_clock;
  ApicBus& m_bus;
  uint32_t m_regs[k_lapic_state_size / 4] = {};
  uint64_t m_apic_base = 0;
  bool m_x2apic_format = false;
  uint32_t m_esr_pending = 0;  // errors since the last ESR write (SDM 10.5.3)
  uint8_t m_events = 0;
  uint8_t m_sipi_vector = 0;
  uint8_t m_lint_level = 0;  // bit n: LINTn input level

  bool m_timer_armed = false;
  Nanoseconds m_timer_start{};   // when the count equalled the initial count
  Nanoseconds m_timer_expiry{};  // next interrupt
  uint64_t m_tsc_deadline = 0;
  uint32_t m_tsc_khz = 1'000'000;
  // LVT timer mode bits the guest may set (Lvt::TimerModeMask or periodic only).
  std::atomic<uint32_t> m_timer_mode_mask{bits(Lvt::TimerModeMask)};
};

}  // namespace anykvm::devices
