// Paging: 32-bit and PAE walks, every #PF error-code bit, CR2 at delivery,
// A/D write-back, CR0.WP, global pages across MOV CR3, INVLPG, 4 MiB pages.
#include "harness.h"

namespace anykvm::soft::test {
namespace {

namespace pte {
constexpr uint32_t P = 1, RW = 2, US = 4, A = 0x20, D = 0x40, PS = 0x80, G = 0x100;
}
constexpr uint64_t k_pd = 0x100000, k_pt0 = 0x101000, k_pt1 = 0x102000;

// 32-bit paging: PDE 0 -> identity page table for 0-4 MiB (supervisor, RW),
// PDE 1 -> k_pt1 for 4-8 MiB (entries set per test).
struct Paged : Machine {
  Paged() {
    protected_mode();
    for (uint32_t i = 0; i < 1024; ++i) w32(k_pt0 + i * 4, (i << 12) | pte::P | pte::RW);
    w32(k_pd + 0, k_pt0 | pte::P | pte::RW | pte::US);
    w32(k_pd + 4, k_pt1 | pte::P | pte::RW | pte::US);
    c().cr3 = k_pd;
    c().cr0 |= cr0::PG;
    c().tlb_flush_all();
    // #PF handler at 0x8000 (interrupt gate, ring 0).
    idt_gate(14, gate_desc(CODE0, 0x8000, 0x8e));
  }
  uint32_t pf_code(uint64_t lin, Access kind, bool user) {
    try {
      c().translate(lin, kind == Access::Write, user, kind == Access::Exec);
    } catch (const Fault& f) {
      EXPECT_EQ(f.vector, Vec::PF);
      EXPECT_TRUE(f.has_error_code);
      EXPECT_EQ(c().tlb.pf_addr, lin);
      return f.error_code;
    }
    ADD_FAILURE() << "no #PF at " << std::hex << lin;
    return ~0u;
  }
};

TEST(Paging, NotPresentErrorCodes) {
  Paged m;
  m.w32(k_pt1 + 5 * 4, 0);  // 0x405000 not present
  EXPECT_EQ(m.pf_code(0x405000, Access::Read, false), 0u);
  EXPECT_EQ(m.pf_code(0x405000, Access::Write, false), 2u);
  EXPECT_EQ(m.pf_code(0x405123, Access::Read, true), 4u);
  EXPECT_EQ(m.pf_code(0x405000, Access::Write, true), 6u);
  EXPECT_EQ(m.pf_code(0x800000, Access::Read, false), 0u);  // PDE 2 not present
}

TEST(Paging, DeliveryWritesCr2AndPushesErrorCode) {
  Paged m;
  Cpu& c = m.c();
  c.rip = 0x1234;
  c.gpr[4] = 0x80000;
  try {
    c.write<uint32_t>(3, 0x405010, 1);
    FAIL();
  } catch (const Fault& f) {
    c.deliver_exception(f);
  }
  EXPECT_EQ(c.cr2, 0x405010u);
  EXPECT_EQ(c.rip, 0x8000u);
  EXPECT_EQ(c.gpr[4], 0x80000u - 16);
  EXPECT_EQ(m.r32(0x80000 - 16), 2u);       // error code: W
  EXPECT_EQ(m.r32(0x80000 - 12), 0x1234u);  // faulting EIP
  EXPECT_EQ(m.r32(0x80000 - 8), CODE0);
  EXPECT_TRUE(m.r32(0x80000 - 4) & fl::RF);  // faults push RF=1
}

TEST(Paging, ReadOnlyPageWithAndWithoutWp) {
  Paged m;
  m.w32(k_pt1 + 1 * 4, 0x200000 | pte::P | pte::US);  // 0x401000 -> RO user page
  Cpu& c = m.c();
  EXPECT_NO_THROW(c.translate(0x401000, true, false, false));  // WP=0: supervisor may write
  c.cr0 |= cr0::WP;
  c.tlb_flush_all();
  EXPECT_EQ(m.pf_code(0x401000, Access::Write, false), 3u);  // P|W
  EXPECT_EQ(m.pf_code(0x401000, Access::Write, true), 7u);   // P|W|U
  EXPECT_NO_THROW(c.translate(0x401000, false, true, false));
}

TEST(Paging, UserAccessToSupervisorPage) {
  Paged m;
  EXPECT_EQ(m.pf_code(0x5000, Access::Read, true), 5u);  // P|U (PT0 entries are supervisor)
  EXPECT_EQ(m.pf_code(0x5000, Access::Write, true), 7u);
}

TEST(Paging, AccessedAndDirtyBits) {
  Paged m;
  m.w32(k_pt1 + 2 * 4, 0x210000 | pte::P | pte::RW);
  Cpu& c = m.c();
  c.read<uint32_t>(3, 0x402000);
  EXPECT_TRUE(m.r32(k_pd + 4) & pte::A);
  EXPECT_TRUE(m.r32(k_pt1 + 8) & pte::A);
  EXPECT_FALSE(m.r32(k_pt1 + 8) & pte::D);
  // The read filled no write tag (D clear): the write walks again and sets D.
  c.write<uint32_t>(3, 0x402004, 7);
  EXPECT_TRUE(m.r32(k_pt1 + 8) & pte::D);
  EXPECT_EQ(m.r32(0x210004), 7u);
}

TEST(Paging, PseLargePageAndReservedBits) {
  Paged m;
  Cpu& c = m.c();
  c.cr4 |= cr4::PSE;
  m.w32(k_pd + 8, 0x400000 | pte::P | pte::RW | pte::PS);  // 0x800000 -> 0x400000, 4 MiB
  c.tlb_flush_all();
  EXPECT_EQ(c.translate(0x8abcde, false, false, false), 0x4abcdeu);
  EXPECT_TRUE(m.r32(k_pd + 8) & pte::A);
  // Bit 21 of a 4 MiB PDE is reserved (MAXPHYADDR 36): P|RSVD.
  m.w32(k_pd + 12, 0x400000 | (1u << 21) | pte::P | pte::PS);
  EXPECT_EQ(m.pf_code(0xc00000, Access::Read, false), 9u);
}

TEST(Paging, GlobalPagesSurviveMovCr3AndInvlpg) {
  Paged m;
  Cpu& c = m.c();
  c.cr4 |= cr4::PGE;
  m.w32(k_pt1 + 3 * 4, 0x300000 | pte::P | pte::RW | pte::G);  // 0x403000 global
  m.w32(k_pt1 + 4 * 4, 0x310000 | pte::P | pte::RW);           // 0x404000 not global
  m.w32(0x300000, 0xa);
  m.w32(0x310000, 0xb);
  m.w32(0x320000, 0xc);
  EXPECT_EQ(c.read<uint32_t>(3, 0x403000), 0xau);
  EXPECT_EQ(c.read<uint32_t>(3, 0x404000), 0xbu);
  // Remap both to 0x320000 without telling the TLB.
  m.w32(k_pt1 + 3 * 4, 0x320000 | pte::P | pte::RW | pte::G);
  m.w32(k_pt1 + 4 * 4, 0x320000 | pte::P | pte::RW);
  // MOV CR3, EAX (0F 22 D8): non-global entries go, the global one stays.
  c.gpr[0] = k_pd;
  EXPECT_EQ(m.exec(with_reg(op2(0x22, 3), 3, 0)), Machine::Outcome::Retired);
  EXPECT_EQ(c.read<uint32_t>(3, 0x403000), 0xau);
  EXPECT_EQ(c.read<uint32_t>(3, 0x404000), 0xcu);
  // INVLPG [0x403000] (0F 01 /7).
  EXPECT_EQ(m.exec(with_mem(op2(0x01, 7), 7, 0x403000)), Machine::Outcome::Retired);
  EXPECT_EQ(c.read<uint32_t>(3, 0x403000), 0xcu);
}

TEST(Paging, Cr4PgeToggleFlushesGlobals) {
  Paged m;
  Cpu& c = m.c();
  c.cr4 |= cr4::PGE;
  m.w32(k_pt1 + 3 * 4, 0x300000 | pte::P | pte::RW | pte::G);
  m.w32(0x300000, 0xa);
  m.w32(0x320000, 0xc);
  EXPECT_EQ(c.read<uint32_t>(3, 0x403000), 0xau);
  m.w32(k_pt1 + 3 * 4, 0x320000 | pte::P | pte::RW | pte::G);
  c.gpr[0] = c.cr4 & ~cr4::PGE;
  EXPECT_EQ(m.exec(with_reg(op2(0x22, 3), 4, 0)), Machine::Outcome::Retired);
  EXPECT_EQ(c.read<uint32_t>(3, 0x403000), 0xcu);
}

// PAE: PDPT at 0x103000, PD at 0x104000, PT at 0x105000 mapping 0-2 MiB.
struct PaePaged : Machine {
  static constexpr uint64_t k_pdpt = 0x103000, k_pae_pd = 0x104000, k_pae_pt = 0x105000;
  PaePaged() {
    protected_mode();
    w64(k_pdpt, k_pae_pd | pte::P);
    w64(k_pae_pd, k_pae_pt | pte::P | pte::RW | pte::US);
    for (uint64_t i = 0; i < 512; ++i) w64(k_pae_pt + i * 8, (i << 12) | pte::P | pte::RW | pte::US);
    c().cr3 = k_pdpt;
    c().cr4 |= cr4::PAE;
    c().efer |= efer::NXE;
    c().cr0 |= cr0::PG;
    c().tlb_flush_all();
  }
};

TEST(Paging, PaeNxFetchFault) {
  PaePaged m;
  Cpu& c = m.c();
  m.w64(PaePaged::k_pae_pt + 0x10 * 8, 0x10000 | pte::P | pte::RW | (1ull << 63));
  uint8_t buf[4];
  EXPECT_EQ(c.fetch_code(0x11000, buf, 4), 4u);  // executable page
  try {
    c.fetch_code(0x10000, buf, 4);
    FAIL();
  } catch (const Fault& f) {
    EXPECT_EQ(f.vector, Vec::PF);
    EXPECT_EQ(f.error_code, 0x11u);  // P | I/D
  }
  // Reads of the NX page still work.
  EXPECT_NO_THROW(c.read<uint8_t>(3, 0x10000));
}

TEST(Paging, PaeReservedBit) {
  PaePaged m;
  Cpu& c = m.c();
  m.w64(PaePaged::k_pae_pt + 0x20 * 8, 0x20000 | pte::P | pte::RW | (1ull << 40));
  try {
    c.read<uint8_t>(3, 0x20000);
    FAIL();
  } catch (const Fault& f) {
    EXPECT_EQ(f.error_code, 9u);  // P | RSVD
  }
  // Without EFER.NXE, bit 63 is reserved too.
  c.efer &= ~efer::NXE;
  c.tlb_flush_all();
  m.w64(PaePaged::k_pae_pt + 0x21 * 8, 0x21000 | pte::P | (1ull << 63));
  EXPECT_THROW(c.read<uint8_t>(3, 0x21000), Fault);
}

TEST(Paging, PaeMovCr3RejectsReservedPdpte) {
  PaePaged m;
  Cpu& c = m.c();
  m.w64(0x106000, 0x104000 | pte::P | pte::RW);  // RW is reserved in a PAE PDPTE
  c.gpr[0] = 0x106000;
  EXPECT_EQ(m.exec(with_reg(op2(0x22, 3), 3, 0)), Machine::Outcome::Faulted);
  EXPECT_EQ(m.last_fault.vector, Vec::GP);
  EXPECT_EQ(c.cr3, PaePaged::k_pdpt);
}

}  // namespace
}  // namespace anykvm::soft::test
