// Local APIC register map and bit names (SDM vol. 3, 10.4.1 table 10-1 for the
// xAPIC MMIO page, 10.12.1.2 table 10-6 for the x2APIC MSRs 0x800 + offset/16).
#pragma once
#include <cstdint>

namespace anykvm::devices {

// Offsets in the 4 KiB register page (also the layout of LapicState).
enum class ApicReg : uint32_t {
  Id = 0x20,
  Version = 0x30,
  Tpr = 0x80,
  Apr = 0x90,
  Ppr = 0xa0,
  Eoi = 0xb0,
  RemoteRead = 0xc0,
  Ldr = 0xd0,
  Dfr = 0xe0,
  Svr = 0xf0,
  Isr = 0x100,  // 8 registers, 16 bytes apart: vectors 32*i .. 32*i+31
  Tmr = 0x180,
  Irr = 0x200,
  Esr = 0x280,
  LvtCmci = 0x2f0,
  IcrLow = 0x300,
  IcrHigh = 0x310,
  LvtTimer = 0x320,
  LvtThermal = 0x330,
  LvtPerf = 0x340,
  LvtLint0 = 0x350,
  LvtLint1 = 0x360,
  LvtError = 0x370,
  TimerInitialCount = 0x380,
  TimerCurrentCount = 0x390,
  TimerDivide = 0x3e0,
  SelfIpi = 0x3f0,  // x2APIC only
};

constexpr uint32_t k_x2apic_msr_base = 0x800;
constexpr uint32_t k_x2apic_msr_last = 0x8ff;

// Version register: version 0x14 (integrated APIC), max LVT entry index in
// bits 23:16. Six LVTs (timer, thermal, perf, LINT0, LINT1, error) as KVM
// reports: 0x00050014. No directed-EOI (bit 24).
constexpr uint32_t k_apic_version = 0x14;
constexpr uint32_t k_apic_lvt_count = 6;
constexpr uint32_t k_apic_version_reg = k_apic_version | ((k_apic_lvt_count - 1) << 16);

enum class Svr : uint32_t {
  VectorMask = 0xff,
  SoftwareEnable = 0x100,
  FocusCheckDisable = 0x200,
  SuppressEoiBroadcast = 0x1000,  // only with version bit 24, which we do not report
};

// Bits shared by the LVT entries (which bits exist depends on the entry).
enum class Lvt : uint32_t {
  VectorMask = 0xff,
  DeliveryModeMask = 0x700,
  DeliveryStatus = 0x1000,  // read-only
  PolarityLow = 0x2000,
  RemoteIrr = 0x4000,  // read-only
  TriggerLevel = 0x8000,
  Masked = 0x10000,
  TimerModeMask = 0x60000,
};
constexpr unsigned k_lvt_timer_mode_shift = 17;

enum class TimerMode : uint32_t { OneShot = 0, Periodic = 1, TscDeadline = 2 };

// Writable bits of each LVT (SDM figure 10-8).
constexpr uint32_t k_lvt_timer_bits = 0xff | 0x10000 | 0x60000;
constexpr uint32_t k_lvt_thermal_perf_bits = 0xff | 0x700 | 0x10000;
constexpr uint32_t k_lvt_lint_bits = 0xff | 0x700 | 0x2000 | 0x8000 | 0x10000;
constexpr uint32_t k_lvt_error_bits = 0xff | 0x10000;

enum class IcrBits : uint32_t {
  VectorMask = 0xff,
  DeliveryModeMask = 0x700,
  DestLogical = 0x800,
  DeliveryStatus = 0x1000,
  LevelAssert = 0x4000,
  TriggerLevel = 0x8000,
  ShorthandMask = 0xc0000,
};
constexpr unsigned k_icr_shorthand_shift = 18;
constexpr uint32_t k_icr_low_bits = 0xff | 0x700 | 0x800 | 0x4000 | 0x8000 | 0xc0000;
constexpr unsigned k_xapic_dest_shift = 24;  // ICR high, LDR and xAPIC ID use bits 31:24

enum class Esr : uint32_t {
  SendChecksum = 0x01,
  ReceiveChecksum = 0x02,
  SendAccept = 0x04,
  ReceiveAccept = 0x08,
  RedirectableIpi = 0x10,
  SendIllegalVector = 0x20,
  ReceiveIllegalVector = 0x40,
  IllegalRegister = 0x80,
};

// DFR bits 31:28; bits 27:0 read as all ones.
enum class DfrModel : uint32_t { Cluster = 0x0, Flat = 0xf };

// Divide configuration register: bits 0, 1 and 3 (SDM figure 10-10).
constexpr uint32_t k_divide_bits = 0xb;

// IA32_APIC_BASE (MSR 0x1b).
enum class ApicBaseBits : uint64_t {
  Bsp = 1ull << 8,
  X2apic = 1ull << 10,
  Enable = 1ull << 11,
};
constexpr uint64_t k_apic_default_base = 0xfee00000;
constexpr uint64_t k_apic_base_address_mask = 0x000ffffffffff000ull;  // 52-bit MAXPHYADDR

}  // namespace anykvm::devices
