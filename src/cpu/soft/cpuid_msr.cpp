// The CPU the software engine claims to be, and its MSRs.
// Vendor GenuineIntel, family 6 (P6 class): Intel because the guests we boot
// (SeaBIOS, Linux i386) take their best-tested paths on Intel, KVM's CPUID
// out-of-range rule and MSR set are Intel-shaped, and SYSENTER/SYSEXIT (not
// SYSCALL) is the 32-bit fast system call on Intel. Only features the engine
// implements are advertised (DESIGN.md "never report a capability you have
// not implemented"): no VME, PSE-36, long mode, SSSE3 or later; XSAVE for
// the x87 and SSE components only (leaf 0xD).
// MSR behaviour follows KVM's (arch/x86/kvm/x86.c) where it differs from bare
// hardware: unknown MSRs #GP, MC bank write rules, PAT validity.
#include "cpu/soft/cpuid_msr.h"

#include <ctime>

#include "cpu/backend.h"
#include "cpu/soft/cpu.h"
#include "cpu/soft/fpu/fpu.h"
#include "cpu/soft/soft_vm.h"

namespace anykvm::soft {
namespace {

// CPUID.1:EDX feature bits (SDM vol. 2, table 3-11) we implement.
namespace f1edx {
constexpr uint32_t FPU = 1u << 0, DE = 1u << 2, PSE = 1u << 3, TSC = 1u << 4, MSR = 1u << 5, PAE = 1u << 6,
                   MCE = 1u << 7, CX8 = 1u << 8, APIC = 1u << 9, SEP = 1u << 11, MTRR = 1u << 12,
                   PGE = 1u << 13, MCA = 1u << 14, CMOV = 1u << 15, PAT = 1u << 16, CLFSH = 1u << 19,
                   MMX = 1u << 23, FXSR = 1u << 24, SSE = 1u << 25, SSE2 = 1u << 26;
}
namespace f1ecx {
constexpr uint32_t SSE3 = 1u << 0, XSAVE = 1u << 26, OSXSAVE = 1u << 27;
}
namespace f81edx {
constexpr uint32_t NX = 1u << 20;
}
namespace f81 {
constexpr uint32_t RDTSCP_EDX = 1u << 27;
}

// "GenuineIntel" in EBX, EDX, ECX order.
constexpr uint32_t k_vendor_ebx = 0x756e6547, k_vendor_edx = 0x49656e69, k_vendor_ecx = 0x6c65746e;
// AMD/Hygon vendors: KVM applies no out-of-range rule for them.
constexpr uint32_t k_amd_ebx = 0x68747541, k_hygon_ebx = 0x6f677948;
constexpr uint32_t k_family6_model6 = 0x00000663;  // family 6, model 6, stepping 3 (P6 class)
constexpr uint32_t k_clflush_64 = 8u << 8;         // CLFLUSH line size in 8-byte units
constexpr uint32_t k_addr_sizes = 0x00002024;      // 36 physical, 32 linear address bits
constexpr char k_brand[49] = "anykvm software x86 CPU (P6 class)             ";

// MSR numbers (SDM vol. 4).
enum Msr : uint32_t {
  KvmWallClock = 0x11, KvmSystemTime = 0x12, Tsc = 0x10, PlatformId = 0x17, ApicBase = 0x1b,
  EblCrPoweron = 0x2a, UcodeRev = 0x8b, P6PerfCtr0 = 0xc1, P6PerfCtr1 = 0xc2, MtrrCap = 0xfe,
  SysenterCs = 0x174, SysenterEsp = 0x175, SysenterEip = 0x176, McgCap = 0x179, McgStatus = 0x17a,
  McgCtl = 0x17b, P6EvntSel0 = 0x186, P6EvntSel1 = 0x187, MiscEnable = 0x1a0, MtrrPhysBase0 = 0x200,
  MtrrPhysMask7 = 0x20f, MtrrFix64k = 0x250, MtrrFix16k80 = 0x258, MtrrFix16kA0 = 0x259,
  MtrrFix4kC0 = 0x268, MtrrFix4kF8 = 0x26f, Pat = 0x277, MtrrDefType = 0x2ff, Mc0Ctl = 0x400,
  Efer = 0xc0000080, Star = 0xc0000081, Lstar = 0xc0000082, Cstar = 0xc0000083, Fmask = 0xc0000084,
  KernelGsBase = 0xc0000102, TscAux = 0xc0000103, TscDeadline = cpu::LocalDevices::k_msr_tsc_deadline,
};

constexpr unsigned k_mc_banks = 10;  // cpu.mc_banks holds 4 MSRs per bank
constexpr uint64_t k_mcg_ctl_p = 1u << 8;
constexpr uint64_t k_mtrr_cap = 0x508;  // 8 variable ranges, fixed ranges, write-combining
constexpr uint64_t k_apic_base_bsp = 1u << 8, k_apic_base_x2apic = 1u << 10, k_apic_base_en = 1u << 11;
constexpr uint64_t k_ucode_rev = 0x100000000ull;  // KVM's default microcode revision
constexpr uint8_t k_maxphyaddr = 36;

const cpu::CpuidEntry* find_leaf(const Cpu& c, uint32_t fn, uint32_t idx) {
  for (const auto& e : c.cpuid_table) {
    if (e.function != fn) continue;
    if ((e.flags & cpu::k_cpuid_flag_significant_index) && e.index != idx) continue;
    return &e;
  }
  return nullptr;
}

// KVM's get_out_of_range_cpuid_entry: on Intel-compatible vendors a leaf above
// its range's maximum answers as the maximum basic leaf.
const cpu::CpuidEntry* out_of_range_leaf(const Cpu& c, uint32_t fn, uint32_t idx) {
  const cpu::CpuidEntry* basic = find_leaf(c, 0, 0);
  if (!basic || basic->ebx == k_amd_ebx || basic->ebx == k_hygon_ebx) return nullptr;
  if (fn < 0x40000000 && fn <= basic->eax) return nullptr;
  uint32_t class_base = fn >= 0xc0000000 ? 0xc0000000 : fn >= 0x80000000 ? 0x80000000
                       : fn >= 0x40000000 ? (fn & 0xffffff00) : 0;
  if (class_base) {
    const cpu::CpuidEntry* cls = find_leaf(c, class_base, 0);
    if (cls && fn <= cls->eax) return nullptr;
  }
  return find_leaf(c, basic->eax, idx);
}

// MTRR memory types valid in PAT and MTRR registers (SDM vol. 3, 11.11.1, 11.12.2).
bool valid_mtrr_type(uint8_t t) { return t == 0 || t == 1 || t == 4 || t == 5 || t == 6; }
bool valid_pat_type(uint8_t t) { return valid_mtrr_type(t) || t == 7; }

uint64_t* fixed_mtrr(Cpu& c, uint32_t i) {
  if (i == MtrrFix64k) return &c.mtrr_fixed[0];
  if (i == MtrrFix16k80) return &c.mtrr_fixed[1];
  if (i == MtrrFix16kA0) return &c.mtrr_fixed[2];
  if (i >= MtrrFix4kC0 && i <= MtrrFix4kF8) return &c.mtrr_fixed[3 + (i - MtrrFix4kC0)];
  return nullptr;
}

bool guest_has(const Cpu& c, uint32_t fn, int reg /*0 eax..3 edx*/, uint32_t bit) {
  const cpu::CpuidEntry* e = find_leaf(c, fn, 0);
  if (!e) return false;
  uint32_t v = reg == 0 ? e->eax : reg == 1 ? e->ebx : reg == 2 ? e->ecx : e->edx;
  return v & bit;
}

uint64_t phys_reserved() { return ~((uint64_t(1) << k_maxphyaddr) - 1); }

}  // namespace

uint64_t mcg_cap() { return k_mc_banks | k_mcg_ctl_p; }

uint64_t host_tsc_count() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  // 1 GHz: one tick per nanosecond (k_tsc_khz).
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

uint64_t guest_tsc(const Cpu& c) { return host_tsc_count() + c.tsc_offset; }

void tsc_synchronize(Cpu& c, uint64_t value) {
  constexpr uint64_t k_one_second = k_tsc_khz * 1000;
  TscSync& s = c.vm.tsc_sync;
  std::lock_guard<std::mutex> g(s.lock);
  const uint64_t now = host_tsc_count();  // 1 GHz: TSC cycles and ns are the same unit
  bool synchronizing = value == 0;        // a vCPU's creation or reset
  if (!synchronizing) {
    const uint64_t expected = s.last_write + (now - s.last_host);
    synchronizing = value < expected + k_one_second && value + k_one_second > expected;
  }
  // The host clock is stable (CLOCK_MONOTONIC), so a matched write takes the
  // generation's offset exactly, as Linux does with a stable host TSC.
  const bool matched = synchronizing && s.written;
  const uint64_t offset = matched ? s.cur_offset : value - now;
  if (!matched) s.cur_offset = offset;
  s.written = true;
  s.last_write = value;
  s.last_host = now;
  c.tsc_offset = offset;
}

void cpuid_query(const Cpu& c, uint32_t fn, uint32_t idx, uint32_t out[4]) {
  const cpu::CpuidEntry* e = find_leaf(c, fn, idx);
  if (!e) e = out_of_range_leaf(c, fn, idx);
  if (!e) {
    out[0] = out[1] = out[2] = out[3] = 0;
    return;
  }
  out[0] = e->eax;
  out[1] = e->ebx;
  out[2] = e->ecx;
  out[3] = e->edx;
  if (e->function == 1) {
    // Dynamic bits KVM keeps in sync (kvm_update_cpuid_runtime).
    if (out[2] & f1ecx::XSAVE) {
      out[2] = (c.cr4 & cr4::OSXSAVE) ? (out[2] | f1ecx::OSXSAVE) : (out[2] & ~f1ecx::OSXSAVE);
    }
    if (!(c.apic_base & k_apic_base_en)) out[3] &= ~f1edx::APIC;
  }
  // kvm_update_cpuid_runtime: 0xD.0 EBX is the XSAVE area size for the
  // current XCR0 (x87 and SSE both live in the legacy region).
  if (e == find_leaf(c, 0xd, 0)) out[1] = xstate::k_area_size;
}

bool msr_read(Cpu& c, uint32_t i, uint64_t& v, bool host) {
  if (c.local) [[unlikely]] {  // in-kernel LAPIC: APIC base, x2APIC, TSC deadline
    uint64_t tsc = i == cpu::LocalDevices::k_msr_tsc_deadline ? guest_tsc(c) : 0;
    if (int r = c.local->msr_read(i, v, host, tsc)) return r > 0;
  }
  switch (i) {
    case Tsc: v = guest_tsc(c); return true;
    case ApicBase: v = c.apic_base; return true;
    case PlatformId: case EblCrPoweron: v = 0; return true;
    case UcodeRev: v = k_ucode_rev; return true;
    case P6PerfCtr0: case P6PerfCtr1: case P6EvntSel0: case P6EvntSel1: v = 0; return true;  // no PMU, as KVM
    case SysenterCs: v = c.sysenter_cs; return true;
    case SysenterEsp: v = c.sysenter_esp; return true;
    case SysenterEip: v = c.sysenter_eip; return true;
    case McgCap: v = mcg_cap(); return true;
    case McgStatus: v = c.mcg_status; return true;
    case McgCtl: v = c.mcg_ctl; return true;
    case MiscEnable: v = c.misc_enable; return true;
    case MtrrCap: v = k_mtrr_cap; return true;
    case MtrrDefType: v = c.mtrr_def_type; return true;
    case Pat: v = c.pat; return true;
    case Efer: v = c.efer; return true;
    case Star: v = c.star; return true;
    case Lstar: v = c.lstar; return true;
    case Cstar: v = c.cstar; return true;
    case Fmask: v = c.fmask; return true;
    case KernelGsBase: v = c.kernel_gs_base; return true;
    case TscAux:
      if (!host && !guest_has(c, 0x80000001, 3, f81::RDTSCP_EDX)) return false;
      v = c.tsc_aux;
      return true;
    case KvmWallClock: v = c.kvm_wall_clock; return true;
    case KvmSystemTime: v = c.kvm_system_time; return true;
    case TscDeadline: v = 0; return true;  // no in-kernel LAPIC (kvm_get_lapic_tscdeadline_msr)
    default: break;
  }
  if (i >= MtrrPhysBase0 && i <= MtrrPhysMask7) {
    v = c.mtrr_var[i - MtrrPhysBase0];
    return true;
  }
  if (uint64_t* f = fixed_mtrr(c, i)) {
    v = *f;
    return true;
  }
  if (i >= Mc0Ctl && i < Mc0Ctl + 4 * k_mc_banks) {
    v = c.mc_banks[i - Mc0Ctl];
    return true;
  }
  return false;
}

bool msr_write(Cpu& c, uint32_t i, uint64_t v, bool host) {
  if (c.local) [[unlikely]] {  // in-kernel LAPIC: APIC base, x2APIC, TSC deadline
    uint64_t tsc = i == cpu::LocalDevices::k_msr_tsc_deadline ? guest_tsc(c) : 0;
    if (int r = c.local->msr_write(i, v, host, tsc)) {
      if (r > 0 && i == ApicBase) c.apic_base = v;  // mirror for CPUID.1:EDX.APIC and GET_SREGS
      return r > 0;
    }
  }
  switch (i) {
    case Tsc:
      if (host) {
        tsc_synchronize(c, v);
      } else {
        // The guest's WRMSR moves the offset so it reads `v` now (SDM 17.17).
        c.tsc_offset = v - host_tsc_count();
      }
      return true;
    case ApicBase: {
      uint64_t reserved = phys_reserved() | 0x2ff;  // bits 7:0, 9 and above MAXPHYADDR
      if (!host && ((v & reserved) || (v & k_apic_base_x2apic))) return false;
      // The BSP flag is read-only for the guest.
      if (!host) v = (v & ~k_apic_base_bsp) | (c.apic_base & k_apic_base_bsp);
      c.apic_base = v;
      return true;
    }
    case PlatformId: case EblCrPoweron: case UcodeRev:
      return true;  // writes ignored (UcodeRev: the guest writes 0 before CPUID)
    case P6PerfCtr0: case P6PerfCtr1: case P6EvntSel0: case P6EvntSel1:
      return true;
    case SysenterCs: c.sysenter_cs = v & 0xffff; return true;
    case SysenterEsp: c.sysenter_esp = v; return true;
    case SysenterEip: c.sysenter_eip = v; return true;
    case McgCap: return host;
    case McgStatus:
      c.mcg_status = v;
      return true;
    case McgCtl:
      if (!host && v != 0 && v != ~0ull) return false;
      c.mcg_ctl = v;
      return true;
    case MiscEnable: c.misc_enable = v; return true;
    case MtrrCap: return host;
    case MtrrDefType:
      if (v & ~0xcffull) return false;
      if (!valid_mtrr_type(uint8_t(v))) return false;
      c.mtrr_def_type = v;
      return true;
    case Pat:
      for (int b = 0; b < 8; ++b)
        if (!valid_pat_type(uint8_t(v >> (8 * b)))) return false;
      c.pat = v;
      return true;
    case Efer: {
      uint64_t allowed = 0;
      if (guest_has(c, 0x80000001, 3, f81edx::NX)) allowed |= efer::NXE;
      if (v & ~allowed & ~efer::LMA) return false;
      if (host) {
        c.efer = v;
      } else {
        c.efer = (v & ~efer::LMA) | (c.efer & efer::LMA);
      }
      c.tlb_flush_all();  // NXE changes the meaning of bit 63 in PAE entries
      return true;
    }
    case Star: c.star = v; return true;
    case Lstar: c.lstar = v; return true;
    case Cstar: c.cstar = v; return true;
    case Fmask: c.fmask = v; return true;
    case KernelGsBase: c.kernel_gs_base = v; return true;
    case TscAux:
      if (!host && !guest_has(c, 0x80000001, 3, f81::RDTSCP_EDX)) return false;
      if (v >> 32) return false;
      c.tsc_aux = v;
      return true;
    case KvmWallClock: c.kvm_wall_clock = v; return true;
    case KvmSystemTime: c.kvm_system_time = v; return true;
    case TscDeadline: return true;  // no in-kernel LAPIC: ignored (kvm_set_lapic_tscdeadline_msr)
    default: break;
  }
  if (i >= MtrrPhysBase0 && i <= MtrrPhysMask7) {
    bool is_base = ((i - MtrrPhysBase0) & 1) == 0;
    uint64_t reserved = phys_reserved() | (is_base ? 0xf00 : 0x7ff);
    if (v & reserved) return false;
    if (is_base && !valid_mtrr_type(uint8_t(v))) return false;
    c.mtrr_var[i - MtrrPhysBase0] = v;
    return true;
  }
  if (uint64_t* f = fixed_mtrr(c, i)) {
    for (int b = 0; b < 8; ++b)
      if (!valid_mtrr_type(uint8_t(v >> (8 * b)))) return false;
    *f = v;
    return true;
  }
  if (i >= Mc0Ctl && i < Mc0Ctl + 4 * k_mc_banks) {
    unsigned off = (i - Mc0Ctl) % 4;
    // KVM: MCi_CTL takes only 0 or all ones; the guest may only clear MCi_STATUS.
    if (off == 0 && v != 0 && v != ~0ull) return false;
    if (off == 1 && !host && v != 0) return false;
    c.mc_banks[i - Mc0Ctl] = v;
    return true;
  }
  return false;
}

}  // namespace anykvm::soft

namespace anykvm::cpu {

std::vector<CpuidEntry> soft_supported_cpuid() {
  using namespace anykvm::soft;
  std::vector<CpuidEntry> v;
  auto add = [&](uint32_t fn, uint32_t idx, uint32_t flags, uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    v.push_back(CpuidEntry{fn, idx, flags, a, b, c, d});
  };
  add(0, 0, 0, 0xd, k_vendor_ebx, k_vendor_ecx, k_vendor_edx);
  uint32_t edx1 = f1edx::FPU | f1edx::DE | f1edx::PSE | f1edx::TSC | f1edx::MSR | f1edx::PAE | f1edx::MCE |
                  f1edx::CX8 | f1edx::APIC | f1edx::SEP | f1edx::MTRR | f1edx::PGE | f1edx::MCA |
                  f1edx::CMOV | f1edx::PAT | f1edx::CLFSH | f1edx::MMX | f1edx::FXSR | f1edx::SSE | f1edx::SSE2;
  add(1, 0, 0, k_family6_model6, k_clflush_64, f1ecx::SSE3 | f1ecx::XSAVE, edx1);
  // Leaf 2: one iteration, descriptor 0xff = "see leaf 4".
  add(2, 0, 0, 0x0000ff01, 0, 0, 0);
  // Leaf 4: deterministic cache parameters. EAX: type | level << 5 | self-init;
  // EBX: (ways-1) << 22 | (partitions-1) << 12 | (line-1); ECX: sets-1.
  constexpr uint32_t k_sig = k_cpuid_flag_significant_index;
  add(4, 0, k_sig, 0x121, (7u << 22) | 63, 63, 0);      // L1d 32 KiB, 8-way
  add(4, 1, k_sig, 0x122, (7u << 22) | 63, 63, 0);      // L1i 32 KiB, 8-way
  add(4, 2, k_sig, 0x143, (15u << 22) | 63, 4095, 0);   // L2 4 MiB, 16-way
  add(4, 3, k_sig, 0, 0, 0, 0);
  // Leaf 0xD: XCR0 may enable x87 | SSE; both in the 576-byte legacy region +
  // header. Subleaf 1: no XSAVEOPT, XSAVEC, XGETBV with ECX = 1, XSAVES.
  add(0xd, 0, k_sig, uint32_t(xstate::SUPPORTED), xstate::k_area_size, xstate::k_area_size, 0);
  add(0xd, 1, k_sig, 0, 0, 0, 0);
  add(0x80000000, 0, 0, 0x80000008, 0, 0, 0);
  add(0x80000001, 0, 0, 0, 0, 0, f81edx::NX);
  for (uint32_t leaf = 0; leaf < 3; ++leaf) {
    uint32_t r[4];
    for (int j = 0; j < 4; ++j) {
      const char* p = k_brand + leaf * 16 + j * 4;
      r[j] = uint32_t(uint8_t(p[0])) | uint32_t(uint8_t(p[1])) << 8 | uint32_t(uint8_t(p[2])) << 16 |
             uint32_t(uint8_t(p[3])) << 24;
    }
    add(0x80000002 + leaf, 0, 0, r[0], r[1], r[2], r[3]);
  }
  add(0x80000008, 0, 0, k_addr_sizes, 0, 0, 0);
  return v;
}

std::vector<uint32_t> soft_msr_index_list() {
  using namespace anykvm::soft;
  std::vector<uint32_t> v = {Tsc, ApicBase, UcodeRev, SysenterCs, SysenterEsp, SysenterEip, McgStatus, McgCtl,
                             MiscEnable, Pat, MtrrDefType, Efer, Star, Lstar, Cstar, Fmask, KernelGsBase,
                             TscAux, KvmWallClock, KvmSystemTime, MtrrCap, McgCap, TscDeadline};
  for (uint32_t i = MtrrPhysBase0; i <= MtrrPhysMask7; ++i) v.push_back(i);
  for (uint32_t i : {MtrrFix64k, MtrrFix16k80, MtrrFix16kA0}) v.push_back(i);
  for (uint32_t i = MtrrFix4kC0; i <= MtrrFix4kF8; ++i) v.push_back(i);
  return v;
}

}  // namespace anykvm::cpu
