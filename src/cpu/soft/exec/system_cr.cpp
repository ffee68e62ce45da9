// MOV to/from CR0/CR2/CR3/CR4 and DR0-DR7, INVD/WBINVD (SDM vol. 2 MOV CRn,
// MOV DRn; vol. 3, 2.5 control registers, 4.10.4.1 TLB flushes, 17.2 debug
// registers). Reserved CR0 bits are dropped and invalid combinations raise
// #GP(0), as KVM does; CR4 accepts only bits this engine implements and the
// guest's CPUID allows. Leaves out: CR8/TPR (64-bit only), long-mode entry.
#include "cpu/soft/events/debug.h"
#include "cpu/soft/exec/system_cr.h"
#include "cpu/soft/exec/system_handlers.h"
#include "cpu/soft/exec/system_util.h"
#include "cpu/soft/mmu/mmu.h"

namespace anykvm::soft {
namespace {

using namespace sys;

constexpr uint64_t k_cr0_defined = cr0::PE | cr0::MP | cr0::EM | cr0::TS | cr0::ET | cr0::NE | cr0::WP |
                                   cr0::AM | cr0::NW | cr0::CD | cr0::PG;
constexpr uint64_t k_cr0_flush = cr0::PG | cr0::WP | cr0::PE;
constexpr uint64_t k_cr4_flush = cr4::PGE | cr4::PAE | cr4::PSE;

// CPUID.1 bits that gate CR4 bits.
constexpr uint32_t k_cpuid1_ecx_xsave = 1u << 26;

// DR6/DR7 fixed and volatile bits (as KVM: DR6_FIXED_1, DR7_VOLATILE).
constexpr uint64_t k_dr6_volatile = 0xe00f, k_dr6_fixed1 = 0xffff0ff0;
constexpr uint64_t k_dr7_volatile = 0xffff2bff, k_dr7_fixed1 = 0x400;

bool pae_paging(const Cpu& c) { return c.paging() && (c.cr4 & cr4::PAE) && !c.long_mode(); }

enum class CrNum : unsigned { Cr0 = 0, Cr2 = 2, Cr3 = 3, Cr4 = 4 };

void h_mov_from_cr(Cpu& c, const Insn& i) {
  require_cpl0(c);
  uint64_t v;
  switch (CrNum(modrm_reg(i))) {
    case CrNum::Cr0: v = c.cr0; break;
    case CrNum::Cr2: v = c.cr2; break;
    case CrNum::Cr3: v = c.cr3; break;
    case CrNum::Cr4: v = c.cr4; break;
    default: throw fault(Vec::UD);
  }
  c.set_reg<uint32_t>(modrm_rm(i), uint32_t(v));
  advance(c, i);
}

void h_mov_to_cr(Cpu& c, const Insn& i) {
  require_cpl0(c);
  uint64_t v = uint32_t(c.gpr[modrm_rm(i)]);
  bool ok = true;
  switch (CrNum(modrm_reg(i))) {
    case CrNum::Cr0: ok = write_cr0(c, v); break;
    case CrNum::Cr2: c.cr2 = v; break;
    case CrNum::Cr3: ok = write_cr3(c, v); break;
    case CrNum::Cr4: ok = write_cr4(c, v); break;
    default: throw fault(Vec::UD);
  }
  if (!ok) throw fault(Vec::GP, 0);
  advance(c, i);
}

// DR4/DR5 alias DR6/DR7 unless CR4.DE (17.2.2).
unsigned dr_index(const Cpu& c, unsigned n) {
  if (n == 4 || n == 5) {
    if (c.cr4 & cr4::DE) throw fault(Vec::UD);
    return n + 2;
  }
  return n;
}

void h_mov_from_dr(Cpu& c, const Insn& i) {
  require_cpl0(c);
  unsigned n = dr_index(c, modrm_reg(i));
  debug_check_gd(c);
  uint64_t v = n < 4 ? c.dr[n] : n == 6 ? c.dr6 : c.dr7;
  c.set_reg<uint32_t>(modrm_rm(i), uint32_t(v));
  advance(c, i);
}

void h_mov_to_dr(Cpu& c, const Insn& i) {
  require_cpl0(c);
  unsigned n = dr_index(c, modrm_reg(i));
  debug_check_gd(c);
  uint64_t v = uint32_t(c.gpr[modrm_rm(i)]);
  if (n < 4) {
    c.dr[n] = v;
    debug_dr7_changed(c);  // breakpoint addresses moved
  } else if (n == 6) {
    c.dr6 = (v & k_dr6_volatile) | k_dr6_fixed1;
  } else {
    c.dr7 = (v & k_dr7_volatile) | k_dr7_fixed1;
    debug_dr7_changed(c);
  }
  advance(c, i);
}

void h_invd(Cpu& c, const Insn& i) {
  require_cpl0(c);  // caches are not modelled
  advance(c, i);
}

}  // namespace

uint64_t cr4_allowed(const Cpu& c) {
  uint64_t allowed = cr4::TSD | cr4::DE | cr4::PSE | cr4::PAE | cr4::MCE | cr4::PGE | cr4::PCE | cr4::OSFXSR |
                     cr4::OSXMMEXCPT;
  for (const auto& e : c.cpuid_table) {
    if (e.function != 1) continue;
    if (e.ecx & k_cpuid1_ecx_xsave) allowed |= cr4::OSXSAVE;
  }
  return allowed;
}

bool write_cr0(Cpu& c, uint64_t v) {
  if (v >> 32) return false;
  v = (v & k_cr0_defined) | cr0::ET;  // ET is hardwired to 1 since the i486
  if ((v & cr0::PG) && !(v & cr0::PE)) return false;
  if ((v & cr0::NW) && !(v & cr0::CD)) return false;
  if ((v & cr0::PG) && !(c.cr0 & cr0::PG) && (c.efer & efer::LME)) return false;  // no long mode
  uint64_t old = c.cr0;
  c.cr0 = v;
  if ((old ^ v) & k_cr0_flush) {
    c.tlb_flush_all();
    // Enabling PAE paging loads the PDPTEs (4.4.1); reserved bits -> #GP.
    if (!(old & cr0::PG) && pae_paging(c) && !mmu_load_pdptes(c)) {
      c.cr0 = old;
      c.tlb_flush_all();
      return false;
    }
  }
  return true;
}

bool write_cr3(Cpu& c, uint64_t v) {
  if (!c.long_mode()) v = uint32_t(v);
  uint64_t old = c.cr3;
  c.cr3 = v;
  // MOV CR3 flushes non-global translations (4.10.4.1) and reloads the PDPTEs.
  c.tlb_flush_nonglobal();
  if (pae_paging(c) && !mmu_load_pdptes(c)) {
    c.cr3 = old;
    c.tlb_flush_nonglobal();
    return false;
  }
  return true;
}

bool write_cr4(Cpu& c, uint64_t v) {
  if (v & ~cr4_allowed(c)) return false;
  if (!(v & cr4::PAE) && c.long_mode()) return false;
  uint64_t old = c.cr4;
  c.cr4 = v;
  if ((old ^ v) & k_cr4_flush) {
    c.tlb_flush_all();
    if (pae_paging(c) && !mmu_load_pdptes(c)) {
      c.cr4 = old;
      c.tlb_flush_all();
      return false;
    }
  }
  return true;
}

void register_system_cr(x86::DispatchTable& t) {
  using x86::OpKey;
  using x86::OpMap;
  t.set(OpKey{OpMap::TwoByte, 0x20}, h_mov_from_cr);
  t.set(OpKey{OpMap::TwoByte, 0x22}, h_mov_to_cr);
  t.set(OpKey{OpMap::TwoByte, 0x21}, h_mov_from_dr);
  t.set(OpKey{OpMap::TwoByte, 0x23}, h_mov_to_dr);
  t.set(OpKey{OpMap::TwoByte, 0x08}, h_invd);
  t.set(OpKey{OpMap::TwoByte, 0x09}, h_invd);
}

}  // namespace anykvm::soft
