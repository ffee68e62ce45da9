// Linear -> guest-physical translation (SDM vol. 3, ch. 4): 32-bit paging with
// 4 KiB and 4 MiB (CR4.PSE) pages, PAE paging with 2 MiB pages and NX
// (EFER.NXE), global pages, CR0.WP, A/D bits set on successful translations
// (4.8), exact #PF error codes (4.7). The PAE/long-mode walker is a level loop
// so 4-level paging only needs its start level; 1 GiB pages, PKU, SMEP/SMAP are
// not modelled (their bits count as reserved or are ignored).
// Paging structures outside RAM read as not-present entries.
#include <cstring>

#include "cpu/soft/mmu/mmu.h"

namespace anykvm::soft {
namespace {

// Paging-structure entry bits (SDM vol. 3, tables 4-4..4-20).
namespace pte {
constexpr uint64_t P = 1u << 0, RW = 1u << 1, US = 1u << 2, A = 1u << 5, D = 1u << 6, PS = 1u << 7, G = 1u << 8;
constexpr uint64_t NX = 1ull << 63;
constexpr uint64_t ADDR_4K_32 = 0xfffff000u;
constexpr uint64_t PAT_LARGE = 1u << 12;  // PAT bit of 2/4 MiB entries, below the frame address
}  // namespace pte

constexpr uint8_t k_maxphyaddr = 36;  // what we report in CPUID 0x80000008 (cpuid_msr.cpp)

[[noreturn]] void page_fault(Cpu& c, uint64_t lin, uint32_t ec) {
  c.tlb.pf_addr = lin;
  throw fault(Vec::PF, ec);
}

uint64_t addr_bits_mask(unsigned m) { return ((uint64_t(1) << m) - 1); }

uint32_t read_pte32(Cpu& c, uint64_t gpa, uint8_t** where) {
  uint8_t* p = c.phys_ptr(gpa, false);
  *where = p;
  uint32_t v = 0;
  if (p) std::memcpy(&v, p, 4);
  return v;
}

uint64_t read_pte64(Cpu& c, uint64_t gpa, uint8_t** where) {
  uint8_t* p = c.phys_ptr(gpa, false);
  *where = p;
  uint64_t v = 0;
  if (p) std::memcpy(&v, p, 8);
  return v;
}

// Set A (and D) in an entry read from `gpa`, writing back only when they
// change, through phys_ptr so dirty logging and code-page tracking see it.
template <typename E>
void set_bits(Cpu& c, uint64_t gpa, E value, E bits) {
  if ((value & bits) == bits) return;
  if (uint8_t* p = c.phys_ptr(gpa, true)) {
    E nv = value | bits;
    std::memcpy(p, &nv, sizeof(E));
  }
}

uint32_t base_error(const Cpu& c, Access kind, bool user) {
  uint32_t ec = 0;
  if (kind == Access::Write) ec |= pferr::W;
  if (user) ec |= pferr::U;
  // KVM reports I/D only when NX (or SMEP) is enabled; so do some CPUs (4.7).
  if (kind == Access::Exec && (c.efer & efer::NXE)) ec |= pferr::ID;
  return ec;
}

// Permission check common to every mode; throws with P=1.
void check_perms(Cpu& c, uint64_t lin, Access kind, bool user, bool us, bool rw, bool nx, uint32_t ec) {
  if (user && !us) page_fault(c, lin, ec | pferr::P);
  if (kind == Access::Write && !rw && (user || (c.cr0 & cr0::WP))) page_fault(c, lin, ec | pferr::P);
  if (kind == Access::Exec && nx) page_fault(c, lin, ec | pferr::P);
}

Translation walk32(Cpu& c, uint64_t lin, Access kind, bool user) {
  uint32_t ec = base_error(c, kind, user);
  uint64_t pde_gpa = (c.cr3 & pte::ADDR_4K_32) | ((lin >> 20) & 0xffc);
  uint8_t* where;
  uint32_t pde = read_pte32(c, pde_gpa, &where);
  if (!(pde & pte::P)) page_fault(c, lin, ec);
  Translation t;
  if ((pde & pte::PS) && (c.cr4 & cr4::PSE)) {
    // 4 MiB page: bits 20:13 hold physical bits 39:32 up to MAXPHYADDR, the
    // rest of 21:13 is reserved (4.3, table 4-5).
    uint64_t rsvd = ((uint64_t(1) << 22) - 1) & ~((uint64_t(1) << (13 + (k_maxphyaddr - 32))) - 1);
    if (pde & rsvd) page_fault(c, lin, ec | pferr::P | pferr::RSVD);
    bool us = pde & pte::US, rw = pde & pte::RW;
    check_perms(c, lin, kind, user, us, rw, false, ec);
    uint32_t bits = pte::A | (kind == Access::Write ? pte::D : 0);
    set_bits<uint32_t>(c, pde_gpa, pde, bits);
    uint64_t frame = (pde & 0xffc00000u) | (uint64_t((pde >> 13) & 0xff) << 32);
    t.gpa = frame | (lin & 0x3fffff);
    t.page_mask = ~uint64_t(0x3fffff);
    t.global = (pde & pte::G) && (c.cr4 & cr4::PGE);
    t.write_ok = (rw || (!user && !(c.cr0 & cr0::WP))) && ((pde | bits) & pte::D);
    t.exec_ok = true;
    return t;
  }
  uint64_t pte_gpa = (pde & pte::ADDR_4K_32) | ((lin >> 10) & 0xffc);
  uint32_t e = read_pte32(c, pte_gpa, &where);
  if (!(e & pte::P)) page_fault(c, lin, ec);
  bool us = (pde & pte::US) && (e & pte::US);
  bool rw = (pde & pte::RW) && (e & pte::RW);
  check_perms(c, lin, kind, user, us, rw, false, ec);
  set_bits<uint32_t>(c, pde_gpa, pde, pte::A);
  uint32_t bits = pte::A | (kind == Access::Write ? pte::D : 0);
  set_bits<uint32_t>(c, pte_gpa, e, bits);
  t.gpa = (e & pte::ADDR_4K_32) | (lin & 0xfff);
  t.global = (e & pte::G) && (c.cr4 & cr4::PGE);
  t.write_ok = (rw || (!user && !(c.cr0 & cr0::WP))) && ((e | bits) & pte::D);
  t.exec_ok = true;
  return t;
}

// PAE (start at the PDPTE cache, 2 levels) and 4-level paging (start at CR3, 4 levels).
Translation walk_pae(Cpu& c, uint64_t lin, Access kind, bool user) {
  uint32_t ec = base_error(c, kind, user);
  bool nxe = c.efer & efer::NXE;
  bool lm = c.long_mode();
  // Address bits above MAXPHYADDR are reserved; in PAE mode so are 62:52 (4.4.2).
  uint64_t rsvd_common = (lm ? ((uint64_t(1) << 52) - 1) : ~pte::NX) & ~addr_bits_mask(k_maxphyaddr);
  if (!nxe) rsvd_common |= pte::NX;
  const uint64_t frame_mask = addr_bits_mask(52) & ~uint64_t(0xfff);

  uint64_t table;
  int level;
  struct Used { uint64_t gpa; uint64_t value; };
  Used used[4];
  int n_used = 0;
  if (lm) {
    table = c.cr3 & frame_mask;
    level = 4;
  } else {
    if (!c.tlb.pdpte_valid) mmu_load_pdptes(c);
    uint64_t pdpte = c.tlb.pdpte[(lin >> 30) & 3];
    if (!(pdpte & pte::P)) page_fault(c, lin, ec);
    table = pdpte & frame_mask;
    level = 2;
  }
  bool us = true, rw = true, nx = false;
  uint64_t leaf = 0, leaf_gpa = 0;
  uint64_t page_size = 4096;
  for (;; --level) {
    int shift = 12 + 9 * (level - 1);
    uint64_t gpa = table + ((lin >> shift) & 0x1ff) * 8;
    uint8_t* where;
    uint64_t e = read_pte64(c, gpa, &where);
    if (!(e & pte::P)) page_fault(c, lin, ec);
    uint64_t rsvd = rsvd_common;
    bool large = level > 1 && (e & pte::PS);
    if (level >= 3 && (e & pte::PS)) rsvd |= pte::PS;  // no 1 GiB pages
    if (large && level == 2) rsvd |= ((uint64_t(1) << 21) - 1) & ~(pte::PAT_LARGE | 0xfff);
    if (e & rsvd) page_fault(c, lin, ec | pferr::P | pferr::RSVD);
    us = us && (e & pte::US);
    rw = rw && (e & pte::RW);
    nx = nx || (nxe && (e & pte::NX));
    if (level == 1 || large) {
      leaf = e;
      leaf_gpa = gpa;
      page_size = uint64_t(1) << shift;
      break;
    }
    used[n_used++] = {gpa, e};
    table = e & frame_mask;
  }
  check_perms(c, lin, kind, user, us, rw, nx, ec);
  for (int i = 0; i < n_used; ++i) set_bits<uint64_t>(c, used[i].gpa, used[i].value, pte::A);
  uint64_t bits = pte::A | (kind == Access::Write ? pte::D : 0);
  set_bits<uint64_t>(c, leaf_gpa, leaf, bits);
  Translation t;
  uint64_t frame = leaf & frame_mask & ~(page_size - 1);
  t.gpa = frame | (lin & (page_size - 1));
  t.page_mask = ~(page_size - 1);
  t.global = (leaf & pte::G) && (c.cr4 & cr4::PGE);
  t.write_ok = (rw || (!user && !(c.cr0 & cr0::WP))) && ((leaf | bits) & pte::D);
  t.exec_ok = !nx;
  return t;
}

}  // namespace

bool mmu_load_pdptes(Cpu& c) {
  // PDPTE reserved bits: 2:1, 8:5 and address bits above MAXPHYADDR (4.4.1).
  const uint64_t rsvd = 0x1e6 | (~addr_bits_mask(k_maxphyaddr));
  uint64_t base = c.cr3 & 0xffffffe0u;
  bool ok = true;
  for (int i = 0; i < 4; ++i) {
    uint8_t* where;
    uint64_t e = read_pte64(c, base + i * 8, &where);
    if ((e & pte::P) && (e & rsvd)) ok = false;
    c.tlb.pdpte[i] = e;
  }
  c.tlb.pdpte_valid = true;
  if (!ok) {
    // Treat as not present, as the load would not have happened.
    for (auto& e : c.tlb.pdpte)
      if (e & rsvd) e = 0;
  }
  return ok;
}

Translation mmu_walk(Cpu& c, uint64_t lin, Access kind, bool user) {
  if (!c.paging()) {
    Translation t;
    t.gpa = c.long_mode() ? lin : uint32_t(lin);
    t.write_ok = t.exec_ok = true;
    return t;
  }
  if (c.cr4 & cr4::PAE) return walk_pae(c, lin, kind, user);
  return walk32(c, lin, kind, user);
}

}  // namespace anykvm::soft
