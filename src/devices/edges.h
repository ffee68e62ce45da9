// The edges a device is driven through (DESIGN.md style 4): a monotonic Clock
// and an IrqLine come in, so every device stays a pure state machine with no
// threads and no timers of its own. The run loop asks a device for its next
// deadline, sleeps until then, and calls the device's update with the time.
// ManualClock is the fake used by tests; MonotonicClock is the host's
// CLOCK_MONOTONIC for the machine layer.
#pragma once
#include <cstdint>
#include <type_traits>

#include "base/types.h"

namespace anykvm::devices {

constexpr int64_t k_ns_per_sec = 1'000'000'000;

// A monotonic nanosecond source. Any thread (implementations are read-only).
class Clock {
 public:
  virtual ~Clock() = default;
  virtual Nanoseconds now() const = 0;
};

// An interrupt request wire into a PIC pin or IOAPIC pin; the device drives it.
// Edge-triggered consumers latch a 0->1 transition, so a pulse is (true, false).
// Called on the driving device's thread, with that device's lock held.
class IrqLine {
 public:
  virtual ~IrqLine() = default;
  virtual void set_level(bool level) = 0;
};

// What happened to a request raised on an interrupt controller input, as
// KVM_IRQ_LINE_STATUS reports it: masked (-1), coalesced with one already
// pending (0), or delivered (1).
enum class IrqResult : int { Masked = -1, Coalesced = 0, Delivered = 1 };

// Tests' clock: time moves only when told. Single thread.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ns = 1'000'000'000) : m_now{start_ns} {}
  Nanoseconds now() const override { return m_now; }
  void advance_ns(int64_t ns) { m_now.value += ns; }
  void set(Nanoseconds t) { m_now = t; }

 private:
  Nanoseconds m_now;
};

// The host's CLOCK_MONOTONIC.
class MonotonicClock final : public Clock {
 public:
  Nanoseconds now() const override;
};

// The underlying value of a register-bit enum, for masks: `v & bits(Icw1::Ic4)`.
template <typename E>
constexpr auto bits(E e) {
  return static_cast<std::underlying_type_t<E>>(e);
}

constexpr Nanoseconds operator+(Nanoseconds a, int64_t ns) { return Nanoseconds{a.value + ns}; }
constexpr int64_t operator-(Nanoseconds a, Nanoseconds b) { return a.value - b.value; }

// a * b / c without overflow for the tick <-> ns conversions (all non-negative).
constexpr uint64_t mul_div(uint64_t a, uint64_t b, uint64_t c) {
  return uint64_t((unsigned __int128)a * b / c);
}

}  // namespace anykvm::devices
