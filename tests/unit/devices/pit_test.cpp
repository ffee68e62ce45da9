// 8254 PIT through ports 0x40-0x43 and 0x61 with a fake clock: modes, OUT,
// latch and read-back, BCD, the channel-2 gate Linux calibrates with, IRQ0
// pulses with and without reinjection, state round trip.
#include "devices/pit.h"

#include <gtest/gtest.h>

#include <cstring>

#include "fakes.h"

using namespace anykvm;
using namespace anykvm::devices;

namespace {

// The first ns at which `n` input clocks have elapsed.
int64_t ticks_ns(uint64_t n) { return int64_t((n * 1'000'000'000ull + k_pit_hz - 1) / k_pit_hz); }

struct PitTest : ::testing::Test {
  ManualClock clock;
  test::RecordingLine irq0;
  Pit pit{clock, &irq0};
  Nanoseconds t0;

  void out(uint16_t port, uint8_t v) { pit.write_port(Port(port), v); }
  uint8_t in(uint16_t port) { return pit.read_port(Port(port)); }
  void program(unsigned ch, uint8_t mode, uint16_t count, bool bcd = false) {
    out(0x43, uint8_t((ch << 6) | 0x30 | (mode << 1) | (bcd ? 1 : 0)));
    out(uint16_t(0x40 + ch), uint8_t(count));
    out(uint16_t(0x40 + ch), uint8_t(count >> 8));
    t0 = clock.now();
  }
  void at_ticks(uint64_t n) { clock.set(t0 + ticks_ns(n)); }
  void just_before(uint64_t n) { clock.set(t0 + (ticks_ns(n) - 1)); }
  uint16_t read_word(unsigned ch) {
    uint8_t lo = in(uint16_t(0x40 + ch));
    return uint16_t(lo | (in(uint16_t(0x40 + ch)) << 8));
  }
  uint8_t status(unsigned ch) {
    out(0x43, uint8_t(0xe0 | (2 << ch)));  // read-back: status only
    return in(uint16_t(0x40 + ch));
  }
};

TEST_F(PitTest, Mode0InterruptOnTerminalCount) {
  program(0, 0, 1000);
  EXPECT_EQ(status(0) & 0x80, 0);  // OUT low while counting
  EXPECT_EQ(status(0) & 0x3f, 0x30);
  EXPECT_EQ(*pit.next_event() - t0, ticks_ns(1000));
  at_ticks(400);
  EXPECT_EQ(read_word(0), 600);
  just_before(1000);
  pit.update();
  EXPECT_EQ(irq0.rising, 0);
  at_ticks(1000);
  pit.update();
  EXPECT_EQ(irq0.rising, 1);
  EXPECT_FALSE(irq0.level);  // a pulse
  EXPECT_EQ(status(0) & 0x80, 0x80);
  at_ticks(1010);
  EXPECT_EQ(read_word(0), 0xfff6);  // wraps and keeps counting
  pit.update();
  EXPECT_EQ(irq0.rising, 1);  // only once
  EXPECT_FALSE(pit.next_event());
}

TEST_F(PitTest, LatchHoldsCountWhileTimeMoves) {
  program(0, 2, 5000);
  at_ticks(1234);
  out(0x43, 0x00);  // latch channel 0
  at_ticks(2000);
  out(0x43, 0x00);  // a second latch before reading is ignored
  EXPECT_EQ(read_word(0), 5000 - 1234);
  EXPECT_EQ(read_word(0), 5000 - 2000);  // unlatched again
}

TEST_F(PitTest, Mode2RateGeneratorPulsesEveryPeriod) {
  pit.set_reinject(false);
  program(0, 2, 1000);
  at_ticks(998);
  EXPECT_TRUE(pit.output(0));
  at_ticks(999);
  EXPECT_FALSE(pit.output(0));  // low for the tick at count 1
  EXPECT_EQ(read_word(0), 1);
  at_ticks(1000);
  EXPECT_TRUE(pit.output(0));
  EXPECT_EQ(read_word(0), 1000);
  for (int k = 1; k <= 3; ++k) {
    at_ticks(1000 * k);
    pit.update();
    EXPECT_EQ(irq0.rising, k);
    EXPECT_EQ(*pit.next_event() - t0, ticks_ns(1000 * (k + 1)));
  }
}

TEST_F(PitTest, ShortPeriodsArePacedForIrq0Only) {
  program(0, 2, 10);
  at_ticks(239);
  EXPECT_EQ(read_word(0), 1);  // the counter itself runs at full rate
  pit.update();
  EXPECT_EQ(irq0.rising, 0);
  EXPECT_EQ(*pit.next_event() - t0, ticks_ns(240));  // every 24th period (~200 us)
  at_ticks(240);
  pit.update();
  EXPECT_EQ(irq0.rising, 1);
}

TEST_F(PitTest, Mode3SquareWaveAndGateOnChannel2) {
  out(0x61, 0x01);  // gate channel 2 on
  program(2, 3, 100);
  at_ticks(49);
  EXPECT_TRUE(pit.output(2));
  EXPECT_EQ(in(0x61) & 0x20, 0x20);
  at_ticks(50);
  EXPECT_FALSE(pit.output(2));
  EXPECT_EQ(in(0x61) & 0x20, 0);
  at_ticks(10);
  EXPECT_EQ(read_word(2), 80);  // counts down by two
  at_ticks(150);
  EXPECT_FALSE(pit.output(2));
  out(0x61, 0x00);  // gate low forces OUT high
  EXPECT_TRUE(pit.output(2));
  EXPECT_EQ(in(0x61) & 0x21, 0x20);
  at_ticks(170);
  out(0x61, 0x01);  // rising gate reloads
  t0 = clock.now();
  at_ticks(49);
  EXPECT_TRUE(pit.output(2));
  at_ticks(51);
  EXPECT_FALSE(pit.output(2));
}

// arch/x86/kernel/tsc.c pit_calibrate_tsc(): gate on, speaker off, channel 2
// mode 0 with a 50 ms count, then spin on port 0x61 bit 5.
TEST_F(PitTest, LinuxTscCalibrationSequence) {
  out(0x61, uint8_t((in(0x61) & ~0x02) | 0x01));
  out(0x43, 0xb0);
  const uint16_t latch = 1193182 / 20;
  out(0x42, latch & 0xff);
  out(0x42, latch >> 8);
  t0 = clock.now();
  int polls = 0;
  while (!(in(0x61) & 0x20) && polls < 100) {
    clock.advance_ns(1'000'000);
    ++polls;
  }
  EXPECT_EQ(polls, 50);
  EXPECT_EQ(irq0.rising, 0);  // channel 2 has no IRQ
}

TEST_F(PitTest, ReadBackCountAndStatus) {
  program(0, 2, 0x1234);
  at_ticks(0x34);
  out(0x43, 0xc2);  // read-back count and status of channel 0
  at_ticks(0x100);
  EXPECT_EQ(in(0x40), 0x80 | 0x30 | (2 << 1));  // status first: OUT high, lohi, mode 2
  EXPECT_EQ(read_word(0), 0x1200);              // then the latched count
  out(0x43, 0xd2);                              // count only
  EXPECT_EQ(read_word(0), 0x1234 - 0x100);
  program(1, 4, 10, true);
  out(0x43, 0xe4);  // status of channel 1
  EXPECT_EQ(in(0x41), 0x80 | 0x30 | (4 << 1) | 1);
}

TEST_F(PitTest, BcdCounting) {
  program(2, 0, 0x1000, true);  // 1000 decimal
  at_ticks(1);
  EXPECT_EQ(read_word(2), 0x0999);
  at_ticks(1001);
  EXPECT_EQ(read_word(2), 0x9999);  // wraps modulo 10000
  program(2, 0, 0x0000, true);      // 0 means 10000
  at_ticks(1);
  EXPECT_EQ(read_word(2), 0x9999);
}

TEST_F(PitTest, LsbOnlyAndMsbOnlyAccess) {
  out(0x43, 0x90);  // channel 2, LSB only, mode 0
  out(0x42, 0x80);
  t0 = clock.now();
  at_ticks(0x10);
  EXPECT_EQ(in(0x42), 0x70);
  EXPECT_EQ(in(0x42), 0x70);  // every read is the LSB
  out(0x43, 0xa0);            // MSB only
  out(0x42, 0x02);            // count 0x200
  t0 = clock.now();
  at_ticks(0x100);
  EXPECT_EQ(in(0x42), 0x01);
  EXPECT_EQ(pit.current_count(2), 0x100u);
}

TEST_F(PitTest, Mode1RetriggeredByGate) {
  program(2, 1, 100);
  out(0x61, 0x01);  // trigger
  t0 = clock.now();
  EXPECT_FALSE(pit.output(2));
  at_ticks(60);
  out(0x61, 0x00);
  out(0x61, 0x01);  // retrigger: starts over
  t0 = clock.now();
  at_ticks(99);
  EXPECT_FALSE(pit.output(2));
  at_ticks(100);
  EXPECT_TRUE(pit.output(2));
}

TEST_F(PitTest, Mode4StrobeIsOneTick) {
  program(0, 4, 50);
  at_ticks(49);
  EXPECT_TRUE(pit.output(0));
  at_ticks(50);
  EXPECT_FALSE(pit.output(0));
  at_ticks(51);
  EXPECT_TRUE(pit.output(0));
}

TEST_F(PitTest, ReinjectHoldsLostTicksUntilAcked) {
  program(0, 2, 1000);
  at_ticks(3500);  // three periods passed
  pit.update();
  EXPECT_EQ(irq0.rising, 1);
  EXPECT_EQ(pit.pending_ticks(), 2u);
  pit.update();
  EXPECT_EQ(irq0.rising, 1);  // waits for the guest's acknowledgment
  pit.irq_acked();
  EXPECT_EQ(irq0.rising, 2);
  pit.irq_acked();
  EXPECT_EQ(irq0.rising, 3);
  pit.irq_acked();
  EXPECT_EQ(irq0.rising, 3);
  EXPECT_EQ(*pit.next_event() - t0, ticks_ns(4000));
}

TEST_F(PitTest, WithoutReinjectLostTicksCoalesce) {
  pit.set_reinject(false);
  program(0, 2, 1000);
  at_ticks(3500);
  pit.update();
  pit.update();
  EXPECT_EQ(irq0.rising, 1);
  EXPECT_EQ(pit.pending_ticks(), 0u);
}

TEST_F(PitTest, UnmaskForgetsAnUnacknowledgedPulse) {
  // KVM's mask notifier (kvm_pit_reset_reinject): after an unmask the PIT
  // neither waits for an ack of a pulse the guest never saw nor owes ticks.
  program(0, 2, 1000);
  at_ticks(3500);
  pit.update();
  EXPECT_EQ(irq0.rising, 1);
  EXPECT_EQ(pit.pending_ticks(), 2u);
  pit.reset_reinject();
  EXPECT_EQ(pit.pending_ticks(), 0u);
  pit.update();
  EXPECT_EQ(irq0.rising, 1);
  at_ticks(4000);
  pit.update();
  EXPECT_EQ(irq0.rising, 2);  // no ack was needed
}

TEST_F(PitTest, TurningReinjectOnDoesNotWaitForAnOldPulse) {
  pit.set_reinject(false);
  program(0, 2, 1000);
  at_ticks(1000);
  pit.update();
  EXPECT_EQ(irq0.rising, 1);
  pit.set_reinject(true);  // kvm_pit_set_reinject: irq_ack = 1
  at_ticks(2000);
  pit.update();
  EXPECT_EQ(irq0.rising, 2);
  at_ticks(3000);
  pit.update();
  EXPECT_EQ(irq0.rising, 2);  // now it waits for the ack of the second
  pit.irq_acked();
  EXPECT_EQ(irq0.rising, 3);
}

TEST_F(PitTest, SpeakerPortBits) {
  EXPECT_EQ(in(0x61) & 0x03, 0);
  out(0x61, 0x03);
  EXPECT_EQ(in(0x61) & 0x03, 0x03);
  EXPECT_EQ(pit.get_state().flags, 2u);
  uint8_t a = in(0x61) & 0x10;
  clock.advance_ns(15085);
  EXPECT_NE(in(0x61) & 0x10, a);  // the refresh bit toggles
}

TEST_F(PitTest, ModesSixAndSevenAlias) {
  out(0x43, 0x3c);  // channel 0, lohi, mode 6
  EXPECT_EQ(pit.get_state().channels[0].mode, 2);
}

TEST_F(PitTest, StateRoundTripsMidWord) {
  out(0x61, 0x01);
  program(0, 2, 11932);
  program(2, 0, 5000);
  out(0x43, 0x80 | 0x30);  // channel 2 mode 0 again: next write is the LSB
  out(0x42, 0x88);         // half a word written
  at_ticks(700);
  out(0x43, 0x00);  // latch channel 0
  in(0x40);         // and read half of it
  PitState s = pit.get_state();
  EXPECT_EQ(s.channels[2].write_state, 4);
  EXPECT_EQ(s.channels[2].write_latch, 0x88);
  EXPECT_EQ(s.channels[0].count_latched, 4);
  EXPECT_EQ(s.channels[0].count, 11932u);

  test::RecordingLine irq0b;
  Pit copy(clock, &irq0b);
  copy.set_state(s);
  PitState s2 = copy.get_state();
  EXPECT_EQ(0, std::memcmp(&s, &s2, sizeof s));
  for (Pit* p : {&pit, &copy}) {
    EXPECT_EQ(p->read_port(Port(0x40)), uint8_t((11932 - 700) >> 8));
    p->write_port(Port(0x42), 0x13);  // completes the word: 0x1388
    EXPECT_EQ(p->current_count(2), 0x1388u);
    EXPECT_EQ(p->read_port(Port(0x61)) & 0x01, 1);
  }
  EXPECT_EQ(copy.next_event(), pit.next_event());
}

}  // namespace

namespace {

TEST_F(PitTest, Mode5StrobeAfterGateTrigger) {
  program(2, 5, 40);
  out(0x61, 0x01);  // the trigger starts the count
  t0 = clock.now();
  at_ticks(39);
  EXPECT_TRUE(pit.output(2));
  at_ticks(40);
  EXPECT_FALSE(pit.output(2));
  at_ticks(41);
  EXPECT_TRUE(pit.output(2));
}

TEST_F(PitTest, HpetLegacyModeSilencesChannel0) {
  program(0, 2, 1000);
  PitState s = pit.get_state();
  s.flags |= 1;  // KVM_PIT_FLAGS_HPET_LEGACY
  pit.set_state(s);
  at_ticks(5000);
  pit.update();
  EXPECT_EQ(irq0.rising, 0);
  EXPECT_FALSE(pit.next_event());
}

}  // namespace
