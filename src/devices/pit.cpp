// 8254 PIT: counters computed from elapsed input-clock ticks.
//  d = ticks since the count was loaded (or retriggered by GATE), N = count.
//  Mode 0/1: OUT rises when d reaches N; the counter wraps and keeps counting.
//  Mode 2:   N - d mod N; OUT low for the one tick at count 1; rises every N.
//  Mode 3:   OUT high for ceil(N/2) ticks, low for floor(N/2); counts by 2.
//  Mode 4/5: OUT low for the one tick at terminal count.
// GATE (channel 2 only; 0 and 1 are tied high): a rising edge retriggers
// modes 1 and 5 and reloads modes 2 and 3; low forces OUT high in 2 and 3.
#include "devices/pit.h"

namespace anykvm::devices {

namespace {
constexpr uint32_t k_binary_modulus = 0x10000;
constexpr uint32_t k_bcd_modulus = 10000;
constexpr int64_t k_refresh_period_ns = 15085;  // DRAM refresh request period, ~15 us
// IRQ0 comes at most every ~200 us (KVM's min_timer_period_us): a shorter
// periodic count interrupts on every k-th period only, so OUT and the count
// stay exact while a guest cannot make the host spin.
constexpr uint64_t k_min_irq_period_ticks = (200'000 * k_pit_hz + k_ns_per_sec - 1) / k_ns_per_sec;

uint32_t modulus(const PitChannelState& c) { return c.bcd ? k_bcd_modulus : k_binary_modulus; }

uint16_t to_bcd(uint32_t v) {
  v %= k_bcd_modulus;
  return uint16_t((v % 10) | ((v / 10 % 10) << 4) | ((v / 100 % 10) << 8) | ((v / 1000) << 12));
}
uint32_t from_bcd(uint32_t raw) {
  return (raw & 0xf) + ((raw >> 4) & 0xf) * 10 + ((raw >> 8) & 0xf) * 100 + ((raw >> 12) & 0xf) * 1000;
}
bool periodic(uint8_t mode) {
  return mode == bits(PitMode::RateGenerator) || mode == bits(PitMode::SquareWave);
}
uint64_t irq_period(uint64_t n) {
  return n >= k_min_irq_period_ticks ? n : n * ((k_min_irq_period_ticks + n - 1) / n);
}
bool gate_triggered(uint8_t mode) {
  return mode == bits(PitMode::HardwareOneShot) || mode == bits(PitMode::HardwareStrobe) || periodic(mode);
}
// The Clock ns at which `ticks` input clocks have elapsed since `load` (rounded up).
Nanoseconds tick_time(int64_t load, uint64_t ticks) {
  return Nanoseconds{load + int64_t((ticks * (unsigned __int128)k_ns_per_sec + k_pit_hz - 1) / k_pit_hz)};
}
}  // namespace

Pit::Pit(const Clock& clock, IrqLine* irq0) : m_clock(clock), m_irq0(irq0) { reset(); }

void Pit::reset() {
  m_s = PitState{};
  for (unsigned ch = 0; ch < k_pit_channels; ++ch) {
    PitChannelState& c = m_s.channels[ch];
    c.mode = k_pit_mode_unprogrammed;
    c.gate = ch != 2;
    c.count = k_binary_modulus;
    c.count_load_time = m_clock.now().value;
  }
  m_pending = 0;
  m_in_flight = false;
  m_edges_seen = 0;
}

bool Pit::handles_port(Port port) {
  uint16_t p = port.raw();
  return (p >= k_port_channel0 && p <= k_port_control) || p == k_port_speaker;
}

uint64_t Pit::elapsed_ticks(const PitChannelState& c) const {
  int64_t ns = m_clock.now().value - c.count_load_time;
  return ns > 0 ? mul_div(uint64_t(ns), k_pit_hz, k_ns_per_sec) : 0;
}

uint32_t Pit::current_count(unsigned ch) const {
  const PitChannelState& c = m_s.channels[ch];
  uint32_t n = c.count ? c.count : modulus(c);
  uint32_t mod = modulus(c);
  if (periodic(c.mode) && !c.gate) return n % mod;  // held until GATE reloads it
  uint64_t d = elapsed_ticks(c);
  switch (c.mode) {
    case bits(PitMode::RateGenerator):
      return uint32_t((n - d % n) % mod);
    case bits(PitMode::SquareWave): {
      uint64_t half = (n + 1) / 2, p = d % n;
      uint64_t v = p < half ? n - 2 * p : n - 2 * (p - half);
      return uint32_t(v % mod);
    }
    default:  // 0, 1, 4, 5 and unprogrammed: count down through zero and wrap
      return uint32_t((n + mod - d % mod) % mod);
  }
}

bool Pit::output(unsigned ch) const {
  const PitChannelState& c = m_s.channels[ch];
  uint64_t n = c.count ? c.count : modulus(c);
  if (periodic(c.mode) && !c.gate) return true;
  uint64_t d = elapsed_ticks(c);
  switch (c.mode) {
    case bits(PitMode::InterruptOnTerminalCount):
    case bits(PitMode::HardwareOneShot):
      return d >= n;
    case bits(PitMode::RateGenerator):
      return d % n != n - 1;
    case bits(PitMode::SquareWave):
      return d % n < (n + 1) / 2;
    case bits(PitMode::SoftwareStrobe):
    case bits(PitMode::HardwareStrobe):
      return d != n;
    default:
      return false;
  }
}

// IRQ0 edges (rising edges of OUT, paced) within the first `ticks` ticks after the load.
uint64_t Pit::edges_by(const PitChannelState& c, uint64_t ticks) const {
  uint64_t n = c.count ? c.count : modulus(c);
  if (c.mode == k_pit_mode_unprogrammed) return 0;
  if (periodic(c.mode)) return c.gate ? ticks / irq_period(n) : 0;
  return ticks >= n ? 1 : 0;
}

void Pit::restart_irq_schedule() { m_edges_seen = edges_by(m_s.channels[0], elapsed_ticks(m_s.channels[0])); }

// ---- ports ----

void Pit::write_port(Port port, uint8_t value) {
  uint16_t p = port.raw();
  if (p == k_port_speaker) {
    set_gate(2, value & bits(SystemPortB::Timer2Gate));
    if (value & bits(SystemPortB::SpeakerData))
      m_s.flags |= bits(PitFlags::SpeakerDataOn);
    else
      m_s.flags &= ~bits(PitFlags::SpeakerDataOn);
    return;
  }
  if (p == k_port_control)
    write_control(value);
  else if (p >= k_port_channel0 && p < k_port_control)
    write_counter(p - k_port_channel0, value);
}

uint8_t Pit::read_port(Port port) {
  uint16_t p = port.raw();
  if (p == k_port_speaker) {
    bool refresh = (m_clock.now().value / k_refresh_period_ns) & 1;
    return uint8_t((output(2) ? bits(SystemPortB::Timer2Output) : 0) |
                   (refresh ? bits(SystemPortB::RefreshToggle) : 0) |
                   (m_s.channels[2].gate ? bits(SystemPortB::Timer2Gate) : 0) |
                   ((m_s.flags & bits(PitFlags::SpeakerDataOn)) ? bits(SystemPortB::SpeakerData) : 0));
  }
  if (p >= k_port_channel0 && p < k_port_control) return read_counter(p - k_port_channel0);
  return 0xff;  // the control word register is write-only
}

void Pit::write_control(uint8_t value) {
  unsigned select = value >> k_pit_select_shift;
  if (select == k_pit_select_read_back) {
    for (unsigned ch = 0; ch < k_pit_channels; ++ch) {
      if (!(value & (bits(PitReadBack::Channel0) << ch))) continue;
      // Count first: a later counter read returns status, then the count.
      if (!(value & bits(PitReadBack::NoCount))) latch_count(ch);
      if (!(value & bits(PitReadBack::NoStatus))) latch_status(ch);
    }
    return;
  }
  auto access = PitAccess((value & bits(PitControl::AccessMask)) >> k_pit_access_shift);
  if (access == PitAccess::Latch) {
    latch_count(select);
    return;
  }
  PitChannelState& c = m_s.channels[select];
  update();  // settle channel 0's edges under the old programming
  c.rw_mode = bits(access);
  c.read_state = c.write_state = bits(access);  // PitAccess Lsb/Msb/Word map to PitByte Lsb/Msb/Word0
  uint8_t mode = (value & bits(PitControl::ModeMask)) >> k_pit_mode_shift;
  c.mode = mode >= 6 ? uint8_t(mode - 4) : mode;  // modes 6 and 7 are 2 and 3
  c.bcd = value & bits(PitControl::Bcd);
}

void Pit::write_counter(unsigned ch, uint8_t value) {
  PitChannelState& c = m_s.channels[ch];
  switch (PitByte(c.write_state)) {
    case PitByte::Lsb:
      load_count(ch, value);
      break;
    case PitByte::Msb:
      load_count(ch, uint32_t(value) << 8);
      break;
    case PitByte::Word0:
      c.write_latch = value;
      c.write_state = bits(PitByte::Word1);
      break;
    case PitByte::Word1:
      c.write_state = bits(PitByte::Word0);
      load_count(ch, c.write_latch | (uint32_t(value) << 8));
      break;
  }
}

uint8_t Pit::read_counter(unsigned ch) {
  PitChannelState& c = m_s.channels[ch];
  if (c.status_latched) {
    c.status_latched = 0;
    return c.status;
  }
  if (c.count_latched) {
    uint16_t v = c.latched_count;
    switch (PitByte(c.count_latched)) {
      case PitByte::Msb:
        c.count_latched = 0;
        return uint8_t(v >> 8);
      case PitByte::Word0:
        c.count_latched = bits(PitByte::Word1);
        return uint8_t(v);
      case PitByte::Word1:
        c.count_latched = 0;
        return uint8_t(v >> 8);
      default:
        c.count_latched = 0;
        return uint8_t(v);
    }
  }
  uint32_t count = current_count(ch);
  uint16_t v = c.bcd ? to_bcd(count) : uint16_t(count);
  switch (PitByte(c.read_state)) {
    case PitByte::Msb:
      return uint8_t(v >> 8);
    case PitByte::Word0:
      c.read_state = bits(PitByte::Word1);
      return uint8_t(v);
    case PitByte::Word1:
      c.read_state = bits(PitByte::Word0);
      return uint8_t(v >> 8);
    default:
      return uint8_t(v);
  }
}

void Pit::load_count(unsigned ch, uint32_t raw) {
  PitChannelState& c = m_s.channels[ch];
  if (ch == 0) update();
  uint32_t v = c.bcd ? from_bcd(raw) : raw;
  c.count = v ? v : modulus(c);
  c.count_load_time = m_clock.now().value;
  if (ch == 0) m_edges_seen = 0;
}

void Pit::latch_count(unsigned ch) {
  PitChannelState& c = m_s.channels[ch];
  if (c.count_latched) return;  // a second latch before the read is ignored
  uint32_t count = current_count(ch);
  c.latched_count = c.bcd ? to_bcd(count) : uint16_t(count);
  c.count_latched = c.rw_mode == bits(PitAccess::Word) ? bits(PitByte::Word0) : c.rw_mode;
}

void Pit::latch_status(unsigned ch) {
  PitChannelState& c = m_s.channels[ch];
  if (c.status_latched) return;
  c.status = uint8_t((output(ch) ? bits(PitStatus::Output) : 0) | (c.rw_mode << k_pit_access_shift) |
                     ((c.mode & 7) << k_pit_mode_shift) | (c.bcd ? bits(PitControl::Bcd) : 0));
  c.status_latched = 1;
}

void Pit::set_gate(unsigned ch, bool level) {
  PitChannelState& c = m_s.channels[ch];
  if (ch == 0) update();
  if (!c.gate && level && gate_triggered(c.mode)) {
    c.count_load_time = m_clock.now().value;  // retrigger / reload
    if (ch == 0) m_edges_seen = 0;
  }
  c.gate = level;
}

// ---- IRQ0 ----

void Pit::fire() {
  if (!m_irq0) return;
  m_irq0->set_level(true);
  m_irq0->set_level(false);
}

void Pit::update() {
  const PitChannelState& c = m_s.channels[0];
  if (!(m_s.flags & bits(PitFlags::HpetLegacy))) {
    uint64_t due = edges_by(c, elapsed_ticks(c));
    if (due > m_edges_seen) {
      uint64_t fresh = due - m_edges_seen;
      m_edges_seen = due;
      if (m_reinject)
        m_pending += uint32_t(fresh);
      else
        m_pending = 1;  // lost ticks coalesce
    }
  }
  if (m_pending && !(m_reinject && m_in_flight)) {
    --m_pending;
    m_in_flight = true;
    fire();
  }
}

void Pit::irq_acked() {
  m_in_flight = false;
  if (m_reinject && m_pending) update();
}

std::optional<Nanoseconds> Pit::next_event() const {
  if (m_pending && !(m_reinject && m_in_flight)) return m_clock.now();
  const PitChannelState& c = m_s.channels[0];
  if (m_s.flags & bits(PitFlags::HpetLegacy) || c.mode == k_pit_mode_unprogrammed) return std::nullopt;
  uint64_t n = c.count ? c.count : modulus(c);
  if (periodic(c.mode)) {
    if (!c.gate) return std::nullopt;
    return tick_time(c.count_load_time, (m_edges_seen + 1) * irq_period(n));
  }
  if (m_edges_seen) return std::nullopt;
  return tick_time(c.count_load_time, n);
}

// ---- state ----

PitState Pit::get_state() const { return m_s; }

void Pit::set_state(const PitState& s) {
  m_s = s;
  for (auto& c : m_s.channels) {
    if (c.count == 0 || c.count > k_binary_modulus) c.count = modulus(c);
    if (c.mode != k_pit_mode_unprogrammed && c.mode > 5) c.mode = uint8_t(c.mode - 4) & 7;
  }
  // Edges before now count as delivered: the saved guest already saw them.
  m_pending = 0;
  m_in_flight = false;
  restart_irq_schedule();
}

}  // namespace anykvm::devices
