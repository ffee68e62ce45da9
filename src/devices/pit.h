// The 8254 programmable interval timer of the PC (Intel 8254 datasheet: control
// word, modes 0-5, counter latch and read-back commands, LSB/MSB/word access,
// binary and BCD) at ports 0x40-0x43, and the part of port 0x61 (AT system
// control port B) that belongs to it: bit 0 gates channel 2, bit 1 enables the
// speaker data, bit 5 reads channel 2's OUT (Linux calibrates the TSC on it),
// bit 4 is the refresh toggle. Input clock 1.193182 MHz. Counters are not
// stepped: count and OUT are computed from the clock and the load time.
// Channel 0's OUT drives IRQ0 through an injected IrqLine, one pulse per
// rising edge; with reinjection (KVM's default) a tick lost while the guest
// has not acknowledged the previous one is delivered after irq_acked().
// Left out (as in KVM): gate-low pausing of modes 0 and 4, the NULL COUNT
// status bit, and the one-clock delay before a new count takes effect.
// State round-trips through PitState, shaped like Linux's struct kvm_pit_state2;
// count_load_time is in the Clock's nanoseconds, count is binary even in BCD mode.
#pragma once
#include <cstdint>
#include <optional>

#include "base/types.h"
#include "devices/edges.h"

namespace anykvm::devices {

constexpr uint64_t k_pit_hz = 1193182;  // PIT_TICK_RATE
constexpr unsigned k_pit_channels = 3;

// Control word (port 0x43).
enum class PitControl : uint8_t {
  Bcd = 0x01,
  ModeMask = 0x0e,
  AccessMask = 0x30,
  SelectMask = 0xc0,
};
constexpr unsigned k_pit_mode_shift = 1, k_pit_access_shift = 4, k_pit_select_shift = 6;
constexpr unsigned k_pit_select_read_back = 3;

// Control word bits 5:4; also the values of rw_mode.
enum class PitAccess : uint8_t { Latch = 0, Lsb = 1, Msb = 2, Word = 3 };
// read_state / write_state / count_latched: which byte comes next.
enum class PitByte : uint8_t { Lsb = 1, Msb = 2, Word0 = 3, Word1 = 4 };

enum class PitMode : uint8_t {
  InterruptOnTerminalCount = 0,
  HardwareOneShot = 1,
  RateGenerator = 2,
  SquareWave = 3,
  SoftwareStrobe = 4,
  HardwareStrobe = 5,
};
constexpr uint8_t k_pit_mode_unprogrammed = 0xff;  // after reset, as KVM

// Read-back command (select = 3).
enum class PitReadBack : uint8_t {
  Channel0 = 0x02,
  Channel1 = 0x04,
  Channel2 = 0x08,
  NoStatus = 0x10,  // active low: 0 latches the status
  NoCount = 0x20,   // active low: 0 latches the count
};

// Status byte returned after a read-back.
enum class PitStatus : uint8_t { Output = 0x80, NullCount = 0x40 };

// Port 0x61.
enum class SystemPortB : uint8_t {
  Timer2Gate = 0x01,
  SpeakerData = 0x02,
  RefreshToggle = 0x10,
  Timer2Output = 0x20,
};

enum class PitFlags : uint32_t { HpetLegacy = 0x1, SpeakerDataOn = 0x2 };

// Same layout and meaning as Linux's struct kvm_pit_channel_state.
struct PitChannelState {
  uint32_t count;  // 1..65536 (1..10000 in BCD)
  uint16_t latched_count;
  uint8_t count_latched;  // PitByte of the next latched byte, 0 if none
  uint8_t status_latched;
  uint8_t status;
  uint8_t read_state;   // PitByte
  uint8_t write_state;  // PitByte
  uint8_t write_latch;  // LSB of a word write in progress
  uint8_t rw_mode;      // PitAccess
  uint8_t mode;         // PitMode or k_pit_mode_unprogrammed
  uint8_t bcd;
  uint8_t gate;
  int64_t count_load_time;  // Clock ns
};
static_assert(sizeof(PitChannelState) == 24);

struct PitState {
  PitChannelState channels[k_pit_channels];
  uint32_t flags;  // PitFlags
  uint32_t reserved[9];
};
static_assert(sizeof(PitState) == 112);

// Single-threaded: the machine serialises port accesses and update().
class Pit {
 public:
  static constexpr uint16_t k_port_channel0 = 0x40, k_port_control = 0x43, k_port_speaker = 0x61;

  Pit(const Clock& clock, IrqLine* irq0);

  static bool handles_port(Port port);
  uint8_t read_port(Port port);
  void write_port(Port port, uint8_t value);

  // Pulse IRQ0 for channel 0 edges due by now. Idempotent.
  void update();
  // When update() next has something to do.
  std::optional<Nanoseconds> next_event() const;
  // The guest acknowledged IRQ0 (PIC INTA / IOAPIC EOI): with reinjection,
  // the next pending tick goes out.
  void irq_acked();
  // KVM_REINJECT_CONTROL. Turning it on forgets an unacknowledged pulse
  // (kvm_pit_set_reinject sets irq_ack).
  void set_reinject(bool on) {
    if (on && !m_reinject) m_in_flight = false;
    m_reinject = on;
  }
  // The guest unmasked IRQ0 (PIC IMR or the IOAPIC pin): a pulse it never saw
  // is not waited for and owed ticks are forgotten (KVM's mask notifier,
  // kvm_pit_reset_reinject), so a masked period cannot stall the timer.
  void reset_reinject() {
    m_pending = 0;
    m_in_flight = false;
  }
  uint32_t pending_ticks() const { return m_pending; }

  // OUT of a channel now (channel 2 is port 0x61 bit 5).
  bool output(unsigned channel) const;
  // The counting element as a read would return it (binary, before BCD encoding).
  uint32_t current_count(unsigned channel) const;

  PitState get_state() const;
  void set_state(const PitState& s);
  void reset();

 private:
  uint64_t elapsed_ticks(const PitChannelState& c) const;
  uint64_t edges_by(const PitChannelState& c, uint64_t ticks) const;
  void write_control(uint8_t value);
  void write_counter(unsigned ch, uint8_t value);
  uint8_t read_counter(unsigned ch);
  void load_count(unsigned ch, uint32_t raw);
  void latch_count(unsigned ch);
  void latch_status(unsigned ch);
  void set_gate(unsigned ch, bool level);
  void restart_irq_schedule();
  void fire();

  const Clock& m_clock;
  IrqLine* m_irq0;
  PitState m_s{};
  bool m_reinject = true;
  uint64_t m_edges_seen = 0;  // channel 0 OUT rising edges counted since its load
  uint32_t m_pending = 0;     // ticks owed to the guest
  bool m_in_flight = false;   // a pulse went out and has not been acknowledged
};

}  // namespace anykvm::devices
