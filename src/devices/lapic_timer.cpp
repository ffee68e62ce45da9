// Local APIC timer (SDM vol. 3, 10.5.4): one-shot, periodic and TSC-deadline.
// The count is not stored: it is computed from the clock, the start time and
// the divisor, so reads are exact at any time and nothing ticks. The bus clock
// is 1 GHz as in KVM (APIC_BUS_CYCLE_NS = 1), i.e. one count per divisor ns.
// Lost ticks of a periodic timer coalesce into one interrupt (IRR holds one).
// A periodic timer interrupts at most every 200 us (KVM's min_timer_period_us):
// below that it skips whole periods, so a guest cannot make the host spin.
#include "devices/lapic.h"

namespace anykvm::devices {

namespace {
constexpr int64_t k_bus_cycle_ns = 1;
constexpr int64_t k_min_periodic_ns = 200'000;
}  // namespace

TimerMode Lapic::timer_mode() const {
  // KVM_SET_LAPIC stores the register as given; only allowed modes take effect.
  const uint32_t allowed = m_timer_mode_mask.load(std::memory_order_relaxed);
  uint32_t m = (reg(ApicReg::LvtTimer) & allowed) >> k_lvt_timer_mode_shift;
  return m == 3 ? TimerMode::OneShot : TimerMode(m);  // 3 is reserved
}

// Divide configuration bits 3,1,0: 000 -> 2, 001 -> 4, ... 110 -> 128, 111 -> 1.
uint32_t Lapic::divisor() const {
  uint32_t d = reg(ApicReg::TimerDivide);
  uint32_t code = (d & 3) | ((d >> 1) & 4);
  return code == 7 ? 1 : 2u << code;
}

uint32_t Lapic::current_count() const {
  if (!m_timer_armed || timer_mode() == TimerMode::TscDeadline) return 0;
  uint32_t initial = reg(ApicReg::TimerInitialCount);
  if (!initial) return 0;
  int64_t elapsed = m_clock.now() - m_timer_start;
  uint64_t ticks = elapsed > 0 ? uint64_t(elapsed) / (uint64_t(divisor()) * k_bus_cycle_ns) : 0;
  if (timer_mode() == TimerMode::Periodic) return uint32_t(initial - ticks % initial);
  return ticks >= initial ? 0 : uint32_t(initial - ticks);
}

// Arm so that the count is `count_now` at this instant and runs down from there.
void Lapic::start_timer(uint32_t count_now) {
  uint32_t initial = reg(ApicReg::TimerInitialCount);
  int64_t tick_ns = int64_t(divisor()) * k_bus_cycle_ns;
  Nanoseconds now = m_clock.now();
  m_timer_start = now + -(int64_t(initial - count_now) * tick_ns);
  m_timer_expiry = m_timer_start + int64_t(initial) * tick_ns;
  m_timer_armed = true;
}

void Lapic::update() {
  if (!m_timer_armed) return;
  Nanoseconds now = m_clock.now();
  if (now < m_timer_expiry) return;
  switch (timer_mode()) {
    case TimerMode::TscDeadline:
      m_tsc_deadline = 0;  // SDM 10.5.4.1: firing disarms and clears IA32_TSC_DEADLINE
      m_timer_armed = false;
      break;
    case TimerMode::OneShot:
      m_timer_armed = false;
      break;
    case TimerMode::Periodic: {
      int64_t period = int64_t(reg(ApicReg::TimerInitialCount)) * divisor() * k_bus_cycle_ns;
      int64_t step =
          period >= k_min_periodic_ns ? period : period * ((k_min_periodic_ns + period - 1) / period);
      int64_t missed = (now - m_timer_expiry) / step + 1;
      m_timer_expiry = m_timer_expiry + missed * step;
      break;
    }
  }
  deliver_lvt(ApicReg::LvtTimer);  // nothing if masked
}

std::optional<Nanoseconds> Lapic::next_timer_deadline() const {
  if (!m_timer_armed || lvt_masked(ApicReg::LvtTimer)) return std::nullopt;
  return m_timer_expiry;
}

uint64_t Lapic::tsc_deadline() const {
  return hw_enabled() && timer_mode() == TimerMode::TscDeadline ? m_tsc_deadline : 0;
}

void Lapic::set_tsc_deadline(uint64_t deadline, uint64_t guest_tsc_now) {
  if (!hw_enabled() || timer_mode() != TimerMode::TscDeadline) return;  // ignored in the other modes
  m_tsc_deadline = deadline;
  if (!deadline) {
    stop_timer();
    return;
  }
  uint64_t delta = deadline > guest_tsc_now ? mul_div(deadline - guest_tsc_now, 1'000'000, m_tsc_khz) : 0;
  m_timer_expiry = m_clock.now() + int64_t(delta);
  m_timer_armed = true;
}

}  // namespace anykvm::devices
