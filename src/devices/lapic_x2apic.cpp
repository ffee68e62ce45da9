// x2APIC MSR interface (SDM vol. 3, 10.12.1.2 table 10-6 and 10.12.1.3): the
// registers at MSR 0x800 + offset/16 with the #GP rules: not in x2APIC mode,
// a register that does not exist in x2APIC mode (APR, RRD, DFR, ICR high,
// CMCI here), RDMSR of write-only EOI/SELF IPI, WRMSR of a read-only register,
// non-zero bits 63:32 (except the 64-bit ICR), reserved bits of TPR/SELF IPI,
// a non-zero write to EOI or ESR.
#include "devices/lapic.h"

namespace anykvm::devices {

namespace {
uint32_t msr_offset(uint32_t msr) { return (msr - k_x2apic_msr_base) << 4; }

bool absent_in_x2apic(uint32_t offset) {
  switch (ApicReg(offset)) {
    case ApicReg::Apr:
    case ApicReg::RemoteRead:
    case ApicReg::Dfr:
    case ApicReg::IcrHigh:
    case ApicReg::LvtCmci:
      return true;
    default:
      return false;
  }
}
}  // namespace

std::optional<uint64_t> Lapic::read_msr(uint32_t msr) {
  if (!x2apic_mode() || !is_x2apic_msr(msr)) return std::nullopt;
  uint32_t offset = msr_offset(msr);
  if (absent_in_x2apic(offset) || offset == uint32_t(ApicReg::Eoi) || offset == uint32_t(ApicReg::SelfIpi))
    return std::nullopt;
  if (offset == uint32_t(ApicReg::IcrLow))
    return (uint64_t(reg(ApicReg::IcrHigh)) << 32) | reg(ApicReg::IcrLow);
  uint32_t value;
  if (offset >= k_lapic_state_size || !read_reg(offset, value)) return std::nullopt;
  return value;
}

bool Lapic::write_msr(uint32_t msr, uint64_t value) {
  if (!x2apic_mode() || !is_x2apic_msr(msr)) return false;
  uint32_t offset = msr_offset(msr);
  if (absent_in_x2apic(offset)) return false;
  if (offset == uint32_t(ApicReg::IcrLow)) {
    reg(ApicReg::IcrHigh) = uint32_t(value >> 32);
    reg(ApicReg::IcrLow) = uint32_t(value) & k_icr_low_bits;
    send_ipi();
    return true;
  }
  if (value >> 32) return false;
  uint32_t v = uint32_t(value);
  switch (ApicReg(offset)) {
    case ApicReg::Tpr:
      if (v & ~0xffu) return false;
      break;
    case ApicReg::Eoi:
    case ApicReg::Esr:
      if (v) return false;
      break;
    case ApicReg::SelfIpi: {  // a fixed, edge-triggered IPI to this APIC (SDM 10.12.11)
      if (v & ~0xffu) return false;
      ApicMessage self;
      self.vector = Vector(uint8_t(v));
      accept(self);  // dropped while software-disabled, like any fixed IPI
      return true;
    }
    case ApicReg::Svr:
    case ApicReg::LvtTimer:
    case ApicReg::LvtThermal:
    case ApicReg::LvtPerf:
    case ApicReg::LvtLint0:
    case ApicReg::LvtLint1:
    case ApicReg::LvtError:
    case ApicReg::TimerInitialCount:
    case ApicReg::TimerDivide:
      break;
    default:
      return false;  // read-only (ID, version, PPR, LDR, ISR/TMR/IRR, current count) or reserved
  }
  write_reg(offset, v);
  return true;
}

}  // namespace anykvm::devices
