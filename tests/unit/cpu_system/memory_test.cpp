// Memory path: segment checks, TLB fast path, dirty logging, code-page writes,
// page-crossing accesses and the MMIO exit/replay protocol.
#include "harness.h"

namespace anykvm::soft::test {
namespace {

TEST(Memory, FlatReadWriteAndTlbFill) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  c.write<uint32_t>(3, 0x5000, 0xdeadbeef);
  EXPECT_EQ(m.r32(0x5000), 0xdeadbeefu);
  EXPECT_EQ(c.read<uint32_t>(3, 0x5000), 0xdeadbeefu);
  const TlbEntry& e = c.tlb.entry(false, 0x5000);
  EXPECT_EQ(e.tag_read, 0x5000u);
  EXPECT_EQ(e.tag_write, 0x5000u);
  // Fast path now: a direct store to RAM is visible through the cached pointer.
  m.w32(0x5004, 0x12345678);
  EXPECT_EQ(c.read<uint32_t>(3, 0x5004), 0x12345678u);
}

TEST(Memory, SegmentLimitFaults) {
  Machine m;  // real mode, 64 KiB limits
  Cpu& c = m.c();
  EXPECT_NO_THROW(c.read<uint16_t>(3, 0xfffe));
  try {
    c.read<uint16_t>(3, 0xffff);
    FAIL();
  } catch (const Fault& f) {
    EXPECT_EQ(f.vector, Vec::GP);
  }
  try {
    c.write<uint32_t>(2, 0xfffd, 1);
    FAIL();
  } catch (const Fault& f) {
    EXPECT_EQ(f.vector, Vec::SS);
  }
}

TEST(Memory, ProtectedTypeChecksAndExpandDown) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  // Writes through CS fault; reads through a readable code segment work.
  EXPECT_NO_THROW(c.read<uint8_t>(1, 0x100));
  EXPECT_THROW(c.write<uint8_t>(1, 0x100, 0), Fault);
  // Expand-down 16-bit data segment, limit 0x0fff: offsets 0x1000..0xffff valid.
  m.w64(k_gdt + 0x48, seg_desc(0x10000, 0x0fff, 0x97, 0));
  c.load_segment(0, 0x48);
  EXPECT_THROW(c.read<uint8_t>(0, 0x0fff), Fault);
  EXPECT_NO_THROW(c.read<uint8_t>(0, 0x1000));
  EXPECT_THROW(c.read<uint16_t>(0, 0xffff), Fault);
  // Null selector in DS: any access is #GP(0).
  c.load_segment(3, 0);
  EXPECT_TRUE(c.seg[3].unusable);
  EXPECT_THROW(c.read<uint8_t>(3, 0), Fault);
}

TEST(Memory, LoadSegmentChecks) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  // SS with RPL != CPL -> #GP(sel).
  try {
    c.load_segment(2, DATA3);
    FAIL();
  } catch (const Fault& f) {
    EXPECT_EQ(f.vector, Vec::GP);
    EXPECT_EQ(f.error_code, uint32_t(DATA3 & 0xfffc));
  }
  // Not-present data segment -> #NP(sel).
  m.w64(k_gdt + 0x48, seg_desc(0, 0xfffff, 0x13));
  try {
    c.load_segment(3, 0x48);
    FAIL();
  } catch (const Fault& f) {
    EXPECT_EQ(f.vector, Vec::NP);
    EXPECT_EQ(f.error_code, 0x48u);
  }
  // Beyond the GDT limit.
  EXPECT_THROW(c.load_segment(3, 0x1f8), Fault);
  // Loading sets the accessed bit in memory.
  m.w64(k_gdt + 0x48, seg_desc(0, 0xfffff, 0x92));
  c.load_segment(3, 0x48);
  EXPECT_EQ(m.r8(k_gdt + 0x48 + 5), 0x93);
}

TEST(Memory, DirtyLog) {
  Machine m(/*log_dirty=*/true);
  m.protected_mode();
  Cpu& c = m.c();
  c.write<uint8_t>(3, 0x7123, 1);
  EXPECT_TRUE(m.dirty[0].load() & (uint64_t(1) << 7));
  EXPECT_FALSE(m.dirty[0].load() & (uint64_t(1) << 8));
}

#ifdef ANYKVM_SOFT_VM_STUB
TEST(Memory, CodePageWritesTakeTheSlowPath) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  m.vm->code_pages.insert(0x9);
  c.write<uint32_t>(3, 0x9010, 0x90909090);
  EXPECT_EQ(m.vm->code_writes.count(0x9), 1u);
  EXPECT_EQ(c.tlb.entry(false, 0x9000).tag_write, k_tlb_invalid);
  EXPECT_EQ(m.r32(0x9010), 0x90909090u);
}
#endif

TEST(Memory, PageCrossingRam) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  c.write<uint64_t>(3, 0x5ffc, 0x1122334455667788ull);
  EXPECT_EQ(m.r64(0x5ffc), 0x1122334455667788ull);
  EXPECT_EQ(c.read<uint64_t>(3, 0x5ffc), 0x1122334455667788ull);
}

TEST(Memory, MmioReadExitAndReplay) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  const uint64_t mmio = k_ram + 0x100;
  EXPECT_THROW(c.read<uint32_t>(3, mmio), StopInsn);
  EXPECT_EQ(c.exit.reason, cpu::ExitReason::Mmio);
  EXPECT_EQ(c.exit.mmio.gpa, mmio);
  EXPECT_EQ(c.exit.mmio.len, 4u);
  EXPECT_FALSE(c.exit.mmio.is_write);
  const uint8_t data[4] = {0x78, 0x56, 0x34, 0x12};
  mmio_complete_read(c, data);
  mmio_reenter(c);
  EXPECT_EQ(c.read<uint32_t>(3, mmio), 0x12345678u);
  mmio_retire(c);
  EXPECT_EQ(c.mmio_log.count, 0);
}

TEST(Memory, MmioPostedWriteThenSecondAccessStops) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  const uint64_t mmio = k_ram + 0x200;
  c.write<uint16_t>(3, mmio, 0xabcd);  // posted: continues
  EXPECT_TRUE(c.exit_pending);
  EXPECT_TRUE(c.exit.mmio.is_write);
  EXPECT_EQ(c.exit.mmio.len, 2u);
  EXPECT_EQ(c.exit.mmio.data[0], 0xcd);
  // A second MMIO access in the same instruction stops it; the exit still reports the write.
  EXPECT_THROW(c.read<uint8_t>(3, mmio + 8), StopInsn);
  EXPECT_TRUE(c.exit.mmio.is_write);
  // Re-entry: the write is skipped, the read exits next.
  c.exit_pending = false;
  mmio_reenter(c);
  c.write<uint16_t>(3, mmio, 0xabcd);
  EXPECT_FALSE(c.exit_pending);
  EXPECT_THROW(c.read<uint8_t>(3, mmio + 8), StopInsn);
  EXPECT_FALSE(c.exit.mmio.is_write);
  EXPECT_EQ(c.exit.mmio.gpa, mmio + 8);
}

TEST(Memory, MmioPageCrossingSplit) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  // 4-byte read at the last two bytes of RAM: 2 bytes RAM + 2 bytes MMIO.
  m.w16(k_ram - 2, 0xbbaa);
  EXPECT_THROW(c.read<uint32_t>(3, k_ram - 2), StopInsn);
  EXPECT_EQ(c.exit.mmio.gpa, k_ram);
  EXPECT_EQ(c.exit.mmio.len, 2u);
  const uint8_t d[2] = {0xcc, 0xdd};
  mmio_complete_read(c, d);
  mmio_reenter(c);
  EXPECT_EQ(c.read<uint32_t>(3, k_ram - 2), 0xddccbbaau);
}

TEST(Memory, MmioPageCrossingWriteAndWidePieces) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  // RAM part written, MMIO part posted as a 1-byte write.
  c.write<uint32_t>(3, k_ram - 3, 0x44332211);
  EXPECT_EQ(m.r8(k_ram - 3), 0x11);
  EXPECT_EQ(m.r16(k_ram - 2), 0x3322);
  EXPECT_TRUE(c.exit_pending);
  EXPECT_EQ(c.exit.mmio.gpa, k_ram);
  EXPECT_EQ(c.exit.mmio.len, 1u);
  EXPECT_EQ(c.exit.mmio.data[0], 0x44);
  mmio_retire(c);
  c.exit_pending = false;
  // A 16-byte MMIO read is two 8-byte exits.
  struct alignas(16) V { uint64_t lo, hi; };
  const uint64_t a = k_ram + 0x40;
  EXPECT_THROW(c.read<V>(3, a), StopInsn);
  EXPECT_EQ(c.exit.mmio.len, 8u);
  uint8_t d1[8] = {1, 0, 0, 0, 0, 0, 0, 0}, d2[8] = {2, 0, 0, 0, 0, 0, 0, 0};
  mmio_complete_read(c, d1);
  mmio_reenter(c);
  EXPECT_THROW(c.read<V>(3, a), StopInsn);
  EXPECT_EQ(c.exit.mmio.gpa, a + 8);
  mmio_complete_read(c, d2);
  mmio_reenter(c);
  V v = c.read<V>(3, a);
  EXPECT_EQ(v.lo, 1u);
  EXPECT_EQ(v.hi, 2u);
}

TEST(Memory, ReadonlyRegionWriteIsMmio) {
  Machine m(false, /*readonly_top=*/true);
  m.protected_mode();
  Cpu& c = m.c();
  const uint64_t rom = k_ram - 0x1000;
  m.w32(rom, 0x11111111);
  EXPECT_EQ(c.read<uint32_t>(3, rom), 0x11111111u);
  c.write<uint32_t>(3, rom, 0x22222222);
  EXPECT_EQ(m.r32(rom), 0x11111111u);
  EXPECT_EQ(c.exit.reason, cpu::ExitReason::Mmio);
  EXPECT_TRUE(c.exit.mmio.is_write);
  EXPECT_EQ(c.exit.mmio.gpa, rom);
}

TEST(Memory, FetchCodeStopsAtLimitAndPage) {
  Machine m;
  Cpu& c = m.c();  // real mode, CS limit 0xffff
  for (int i = 0; i < 16; ++i) m.w8(0xfff8 + i, uint8_t(i));
  uint8_t buf[15];
  EXPECT_EQ(c.fetch_code(0xfff8, buf, 15), 8u);
  EXPECT_EQ(buf[7], 7);
  EXPECT_THROW(c.fetch_code(0x10000, buf, 15), Fault);
}

TEST(Memory, GenerationChangeFlushesTlb) {
  Machine m;
  m.protected_mode();
  Cpu& c = m.c();
  c.write<uint32_t>(3, 0x5000, 1);
  EXPECT_EQ(c.tlb.entry(false, 0x5000).tag_write, 0x5000u);
  m.src.bump();
  mmu_sync(c);
  EXPECT_EQ(c.tlb.entry(false, 0x5000).tag_write, k_tlb_invalid);
}

}  // namespace
}  // namespace anykvm::soft::test
