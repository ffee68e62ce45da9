// Engine-loop tests through make_soft_vm: small hand-assembled guests in real
// mode and flat 32-bit protected mode covering arithmetic, REP string ops,
// port I/O exits (posted OUT, IN completed on re-entry, batched REP OUTSB/INSB),
// MMIO exits completed on re-entry (loads, stores, read-modify-write, MOVS
// between MMIO and RAM), self-modifying code, user-space code writes, exceptions
// and interrupts through the IVT, the interrupt window, the stop flag, HLT and
// the internal-error exit for opcodes without a handler.
#include <cstring>

#include "harness.h"
#include "x86/decode/decoder.h"
#include "x86/decode/insn.h"

namespace anykvm::test {
namespace {

using cpu::ExitReason;
enum { EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI };

TEST(EngineReal, ArithmeticAndLoop) {
  Guest g;
  g.load(0x1000, {
                     0xb8, 0x05, 0x00,  // mov ax, 5
                     0x05, 0x07, 0x00,  // add ax, 7
                     0xbb, 0x03, 0x00,  // mov bx, 3
                     0xf7, 0xe3,        // mul bx
                     0xb9, 0x0a, 0x00,  // mov cx, 10
                     0x31, 0xf6,        // xor si, si
                     0x01, 0xce,        // add si, cx
                     0xe2, 0xfc,        // loop -4
                     0xf4,              // hlt
                 });
  g.real_mode(0x1000);
  auto e = g.run();
  ASSERT_EQ(e.reason, ExitReason::Hlt);
  EXPECT_EQ(g.gpr(EAX) & 0xffff, 36u);
  EXPECT_EQ(g.gpr(ESI) & 0xffff, 55u);
  EXPECT_EQ(g.gpr(ECX) & 0xffff, 0u);
  EXPECT_EQ(g.regs().rip, 0x1000u + 21);
}

TEST(EngineFlat32, FlagsShiftsDivide) {
  Guest g;
  g.load(0x1000, {
                     0xb8, 0xff, 0xff, 0xff, 0x7f,  // mov eax, 0x7fffffff
                     0x83, 0xc0, 0x01,              // add eax, 1
                     0x0f, 0x90, 0xc3,              // seto bl
                     0x0f, 0x98, 0xc7,              // sets bh
                     0xb9, 0x10, 0x00, 0x00, 0x00,  // mov ecx, 16
                     0xd3, 0xe0,                    // shl eax, cl
                     0x0f, 0x94, 0xc1,              // sete cl
                     0xba, 0x00, 0x00, 0x00, 0x00,  // mov edx, 0
                     0xb8, 0x64, 0x00, 0x00, 0x00,  // mov eax, 100
                     0xbe, 0x07, 0x00, 0x00, 0x00,  // mov esi, 7
                     0xf7, 0xf6,                    // div esi
                     0xf4,                          // hlt
                 });
  g.flat32(0x1000);
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
  EXPECT_EQ(g.gpr(EAX), 14u);
  EXPECT_EQ(g.gpr(EDX), 2u);
  EXPECT_EQ(g.gpr(EBX) & 0xffff, 0x0101u);
  EXPECT_EQ(g.gpr(ECX) & 0xff, 1u);
}

TEST(EngineFlat32, RepStringOps) {
  Guest g;
  g.load(0x3000, {'h', 'e', 'l', 'l', 'o'});
  g.load(0x1000, {
                     0xbe, 0x00, 0x30, 0x00, 0x00,  // mov esi, 0x3000
                     0xbf, 0x00, 0x40, 0x00, 0x00,  // mov edi, 0x4000
                     0xb9, 0x05, 0x00, 0x00, 0x00,  // mov ecx, 5
                     0xfc,                          // cld
                     0xf3, 0xa4,                    // rep movsb
                     0xbe, 0x00, 0x30, 0x00, 0x00,  // mov esi, 0x3000
                     0xbf, 0x00, 0x40, 0x00, 0x00,  // mov edi, 0x4000
                     0xb9, 0x05, 0x00, 0x00, 0x00,  // mov ecx, 5
                     0xf3, 0xa6,                    // repe cmpsb
                     0x0f, 0x94, 0xc0,              // sete al
                     0xbf, 0x00, 0x50, 0x00, 0x00,  // mov edi, 0x5000
                     0xb8, 0xaa, 0xbb, 0xcc, 0xdd,  // mov eax, 0xddccbbaa
                     0xb9, 0x00, 0x04, 0x00, 0x00,  // mov ecx, 1024
                     0xf3, 0xab,                    // rep stosd
                     0xf4,                          // hlt
                 });
  g.ram[0x4000 + 5] = 'X';
  g.flat32(0x1000);
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
  EXPECT_EQ(std::memcmp(&g.ram[0x4000], "helloX", 6), 0);
  EXPECT_EQ(g.gpr(EDI), 0x6000u);
  EXPECT_EQ(g.gpr(ECX), 0u);
  for (uint64_t a = 0x5000; a < 0x6000; a += 4) ASSERT_EQ(g.r32(a), 0xddccbbaau) << a;
  EXPECT_EQ(g.r32(0x6000), 0u);
}

TEST(EngineFlat32, RepeCmpsStopsAtMismatch) {
  Guest g;
  g.load(0x3000, {'a', 'b', 'c', 'd'});
  g.load(0x4000, {'a', 'b', 'X', 'd'});
  g.load(0x1000, {
                     0xbe, 0x00, 0x30, 0x00, 0x00,  // mov esi, 0x3000
                     0xbf, 0x00, 0x40, 0x00, 0x00,  // mov edi, 0x4000
                     0xb9, 0x04, 0x00, 0x00, 0x00,  // mov ecx, 4
                     0xf3, 0xa6,                    // repe cmpsb
                     0xf4,                          // hlt
                 });
  g.flat32(0x1000);
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
  EXPECT_EQ(g.gpr(ECX), 1u);
  EXPECT_EQ(g.gpr(ESI), 0x3003u);
  EXPECT_FALSE(g.regs().rflags & 0x40);  // ZF clear
}

TEST(EngineIo, OutPostedThenInCompletedOnReentry) {
  Guest g;
  g.load(0x1000, {
                     0x66, 0xba, 0xf8, 0x03,  // mov dx, 0x3f8
                     0xb0, 0x41,              // mov al, 'A'
                     0xee,                    // out dx, al
                     0xec,                    // in al, dx
                     0x88, 0xc3,              // mov bl, al
                     0xf4,                    // hlt
                 });
  g.flat32(0x1000);
  auto e = g.run();
  ASSERT_EQ(e.reason, ExitReason::Io);
  EXPECT_TRUE(e.io.out);
  EXPECT_EQ(e.io.port, 0x3f8);
  EXPECT_EQ(e.io.size, 1);
  EXPECT_EQ(e.io.count, 1u);
  EXPECT_EQ(g.pio[0], 'A');
  EXPECT_EQ(g.regs().rip, 0x1007u);  // OUT retired
  e = g.run();
  ASSERT_EQ(e.reason, ExitReason::Io);
  EXPECT_FALSE(e.io.out);
  EXPECT_EQ(e.io.port, 0x3f8);
  EXPECT_EQ(g.regs().rip, 0x1007u);  // IN not retired yet
  g.pio[0] = 0x5a;
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
  EXPECT_EQ(g.gpr(EBX) & 0xff, 0x5au);
}

TEST(EngineIo, RepOutsbBatches) {
  Guest g;
  g.load(0x3000, {'h', 'e', 'l', 'l', 'o'});
  g.load(0x1000, {
                     0xbe, 0x00, 0x30, 0x00, 0x00,  // mov esi, 0x3000
                     0xb9, 0x05, 0x00, 0x00, 0x00,  // mov ecx, 5
                     0x66, 0xba, 0xe9, 0x00,        // mov dx, 0xe9
                     0xf3, 0x6e,                    // rep outsb
                     0xf4,                          // hlt
                 });
  g.flat32(0x1000);
  auto e = g.run();
  ASSERT_EQ(e.reason, ExitReason::Io);
  EXPECT_TRUE(e.io.out);
  EXPECT_EQ(e.io.port, 0xe9);
  EXPECT_EQ(e.io.count, 5u);
  EXPECT_EQ(std::memcmp(g.pio.data(), "hello", 5), 0);
  EXPECT_EQ(g.gpr(ECX), 0u);
  EXPECT_EQ(g.gpr(ESI), 0x3005u);
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
}

TEST(EngineIo, RepInsbBatches) {
  Guest g;
  g.load(0x1000, {
                     0xbf, 0x00, 0x40, 0x00, 0x00,  // mov edi, 0x4000
                     0xb9, 0x04, 0x00, 0x00, 0x00,  // mov ecx, 4
                     0x66, 0xba, 0x60, 0x00,        // mov dx, 0x60
                     0xf3, 0x6c,                    // rep insb
                     0xf4,                          // hlt
                 });
  g.flat32(0x1000);
  auto e = g.run();
  ASSERT_EQ(e.reason, ExitReason::Io);
  EXPECT_FALSE(e.io.out);
  EXPECT_EQ(e.io.count, 4u);
  for (int k = 0; k < 4; ++k) g.pio[k] = uint8_t(k + 1);
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
  EXPECT_EQ(g.r32(0x4000), 0x04030201u);
  EXPECT_EQ(g.gpr(EDI), 0x4004u);
  EXPECT_EQ(g.gpr(ECX), 0u);
}

TEST(EngineMmio, LoadStoreAndReadModifyWrite) {
  Guest g;
  g.load(0x1000, {
                     0xa1, 0x00, 0x00, 0x20, 0x00,        // mov eax, [0x200000]
                     0xa3, 0x04, 0x00, 0x20, 0x00,        // mov [0x200004], eax
                     0x01, 0x05, 0x08, 0x00, 0x20, 0x00,  // add [0x200008], eax
                     0xf4,                                // hlt
                 });
  g.flat32(0x1000);
  auto e = g.run();
  ASSERT_EQ(e.reason, ExitReason::Mmio);
  EXPECT_FALSE(e.mmio.is_write);
  EXPECT_EQ(e.mmio.gpa, k_mmio);
  EXPECT_EQ(e.mmio.len, 4u);
  uint8_t d1[4] = {0x44, 0x33, 0x22, 0x11};
  g.vcpu->complete_mmio_read(d1);
  e = g.run();
  ASSERT_EQ(e.reason, ExitReason::Mmio);
  EXPECT_TRUE(e.mmio.is_write);
  EXPECT_EQ(e.mmio.gpa, k_mmio + 4);
  uint32_t v;
  std::memcpy(&v, e.mmio.data, 4);
  EXPECT_EQ(v, 0x11223344u);
  EXPECT_EQ(g.gpr(EAX), 0x11223344u);
  e = g.run();
  ASSERT_EQ(e.reason, ExitReason::Mmio);
  EXPECT_FALSE(e.mmio.is_write);
  EXPECT_EQ(e.mmio.gpa, k_mmio + 8);
  uint8_t d2[4] = {1, 0, 0, 0};
  g.vcpu->complete_mmio_read(d2);
  e = g.run();
  ASSERT_EQ(e.reason, ExitReason::Mmio);
  EXPECT_TRUE(e.mmio.is_write);
  EXPECT_EQ(e.mmio.gpa, k_mmio + 8);
  std::memcpy(&v, e.mmio.data, 4);
  EXPECT_EQ(v, 0x11223345u);
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
}

TEST(EngineMmio, RepMovsFromMmioToRam) {
  Guest g;
  g.load(0x1000, {
                     0xbe, 0x00, 0x00, 0x20, 0x00,  // mov esi, 0x200000
                     0xbf, 0x00, 0x40, 0x00, 0x00,  // mov edi, 0x4000
                     0xb9, 0x02, 0x00, 0x00, 0x00,  // mov ecx, 2
                     0xf3, 0xa5,                    // rep movsd
                     0xf4,                          // hlt
                 });
  g.flat32(0x1000);
  for (uint32_t k = 0; k < 2; ++k) {
    auto e = g.run();
    ASSERT_EQ(e.reason, ExitReason::Mmio) << k;
    EXPECT_FALSE(e.mmio.is_write);
    EXPECT_EQ(e.mmio.gpa, k_mmio + 4 * k);
    uint32_t v = 0xa0a0a0a0u + k;
    g.vcpu->complete_mmio_read(std::span<const uint8_t>(reinterpret_cast<uint8_t*>(&v), 4));
  }
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
  EXPECT_EQ(g.r32(0x4000), 0xa0a0a0a0u);
  EXPECT_EQ(g.r32(0x4004), 0xa0a0a0a1u);
  EXPECT_EQ(g.gpr(ECX), 0u);
}

TEST(EngineMmio, RepStosToMmioExitsPerElement) {
  Guest g;
  g.load(0x1000, {
                     0xbf, 0x00, 0x00, 0x20, 0x00,  // mov edi, 0x200000
                     0xb9, 0x03, 0x00, 0x00, 0x00,  // mov ecx, 3
                     0xb0, 0x7e,                    // mov al, 0x7e
                     0xf3, 0xaa,                    // rep stosb
                     0xf4,                          // hlt
                 });
  g.flat32(0x1000);
  for (uint32_t k = 0; k < 3; ++k) {
    auto e = g.run();
    ASSERT_EQ(e.reason, ExitReason::Mmio) << k;
    EXPECT_TRUE(e.mmio.is_write);
    EXPECT_EQ(e.mmio.gpa, k_mmio + k);
    EXPECT_EQ(e.mmio.data[0], 0x7e);
  }
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
}

TEST(EngineCode, SelfModifyingInSameBlock) {
  Guest g;
  g.load(0x1000, {
                     0xc6, 0x05, 0x08, 0x10, 0x00, 0x00, 0x42,  // mov byte [0x1008], 0x42
                     0xb0, 0x00,                                // mov al, 0
                     0xf4,                                      // hlt
                 });
  g.flat32(0x1000);
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
  EXPECT_EQ(g.gpr(EAX) & 0xff, 0x42u);
}

TEST(EngineCode, SelfModifyingCachedFunction) {
  Guest g;
  g.load(0x1000, {
                     0xb9, 0x02, 0x00, 0x00, 0x00,        // mov ecx, 2
                     0xe8, 0x0a, 0x00, 0x00, 0x00,        // 1005: call 0x1014
                     0xfe, 0x05, 0x15, 0x10, 0x00, 0x00,  // 100a: inc byte [0x1015]
                     0xe2, 0xf3,                          // 1010: loop 0x1005
                     0xf4,                                // 1012: hlt
                     0x90,                                // 1013
                     0xb0, 0x10,                          // 1014: mov al, 0x10
                     0x00, 0xc3,                          // add bl, al
                     0xc3,                                // ret
                 });
  g.flat32(0x1000);
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
  EXPECT_EQ(g.gpr(EBX) & 0xff, 0x21u);
  EXPECT_EQ(g.ram[0x1015], 0x12);
}

TEST(EngineCode, UserSpaceWriteSeenOnNextEntry) {
  Guest g;
  g.load(0x1000, {0xb0, 0x01, 0xf4});  // mov al, 1; hlt
  g.flat32(0x1000);
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
  EXPECT_EQ(g.gpr(EAX) & 0xff, 1u);
  g.ram[0x1001] = 0x02;  // as QEMU writing guest RAM directly
  cpu::Regs r = g.regs();
  r.rip = 0x1000;
  g.vcpu->set_regs(r);
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
  EXPECT_EQ(g.gpr(EAX) & 0xff, 2u);
}

// An opcode in the catalogue that no area implements: internal error with bytes.
TEST(EngineExits, UnimplementedOpcodeIsInternalError) {
  std::vector<uint8_t> enc;
  for (const auto& row : x86::opcode_rows()) {
    if (row.prefix != x86::RowPrefix::ANY || row.group >= 0) continue;
    std::vector<uint8_t> b;
    if (row.map == x86::OpMap::TwoByte) b.push_back(0x0f);
    b.push_back(row.opcode);
    for (int k = 0; k < 8; ++k) b.push_back(0xc0);
    x86::Insn in;
    if (x86::decode(b.data(), b.size(), 32, in) != x86::DecodeStatus::Ok) continue;
    if (x86::dispatch_table().lookup(x86::insn_key(in), in.opsize)) continue;
    enc.assign(b.begin(), b.begin() + in.len);
    break;
  }
  if (enc.empty()) GTEST_SKIP() << "every catalogue row has a handler";
  Guest g;
  g.load(0x1000, enc);
  g.flat32(0x1000);
  auto e = g.run();
  ASSERT_EQ(e.reason, ExitReason::InternalError);
  EXPECT_EQ(e.internal.suberror, cpu::InternalSuberror::Emulation);
  EXPECT_EQ(e.internal.data[0], enc.size());
  uint8_t got[16] = {};
  std::memcpy(got, &e.internal.data[1], enc.size());
  EXPECT_EQ(std::memcmp(got, enc.data(), enc.size()), 0);
  EXPECT_EQ(g.regs().rip, 0x1000u);
}

TEST(EngineEvents, DivideErrorThroughIvt) {
  Guest g;
  g.w16(0 * 4, 0x2000);  // IVT[0] = 0000:2000
  g.w16(0 * 4 + 2, 0);
  g.load(0x2000, {0xf4});
  g.load(0x1000, {0x31, 0xc9, 0xf7, 0xf1});  // xor cx, cx; div cx
  g.real_mode(0x1000);
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
  EXPECT_EQ(g.regs().rip, 0x2001u);
  EXPECT_EQ(g.ram[0x8000 - 6] | (g.ram[0x8000 - 5] << 8), 0x1002);  // pushed IP = the DIV
}

TEST(EngineEvents, UndefinedOpcodeRaisesUd) {
  Guest g;
  g.w16(6 * 4, 0x2000);
  g.load(0x2000, {0xf4});
  g.load(0x1000, {0x90, 0x0f, 0xff});  // nop; (0F FF undefined)
  g.real_mode(0x1000);
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
  EXPECT_EQ(g.regs().rip, 0x2001u);
  EXPECT_EQ(g.ram[0x8000 - 6] | (g.ram[0x8000 - 5] << 8), 0x1001);
}

TEST(EngineEvents, QueuedInterruptDeliveredAtEntry) {
  Guest g;
  g.w16(0x20 * 4, 0x2000);
  g.load(0x2000, {0xb3, 0x77, 0xf4});  // mov bl, 0x77; hlt
  g.load(0x1000, {0xf4});
  g.real_mode(0x1000);
  cpu::Regs r = g.regs();
  r.rflags = 0x202;
  g.vcpu->set_regs(r);
  EXPECT_TRUE(g.vcpu->ready_for_interrupt_injection());
  ASSERT_TRUE(g.vcpu->queue_interrupt(0x20));
  EXPECT_FALSE(g.vcpu->queue_interrupt(0x21));
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
  EXPECT_EQ(g.gpr(EBX) & 0xff, 0x77u);
}

TEST(EngineEvents, InterruptWindowAndStopFlag) {
  Guest g;
  g.load(0x1000, {0xfb, 0x90, 0xf4});  // sti; nop; hlt
  g.real_mode(0x1000);
  g.ctl.request_interrupt_window = true;
  auto e = g.run();
  // IF=0 at entry: the window opens after STI and its shadow (the NOP).
  ASSERT_EQ(e.reason, ExitReason::IrqWindowOpen);
  EXPECT_EQ(g.regs().rip, 0x1002u);
  g.ctl.request_interrupt_window = false;
  g.immediate_exit = 1;
  EXPECT_EQ(g.run().reason, ExitReason::Interrupted);
  g.immediate_exit = 0;
  EXPECT_EQ(g.run().reason, ExitReason::Hlt);
}

TEST(EngineFlat32, StackCallRetEnterLeave) {
  Guest g;
  g.load(0x1000, {
                     0x68, 0x44, 0x33, 0x22, 0x11,  // push 0x11223344
                     0xe8, 0x02, 0x00, 0x00, 0x00,  // call 0x100c
                     0xf4,                          // 100a: hlt
                     0x90,                          // 100b
                     0xc8, 0x08, 0x00, 0x00,        // 100c: enter 8, 0
                     0x8b, 0x45, 0x08,              // mov eax, [ebp+8]
                     0xc9,                          // leave
                     0xc2, 0x04, 0x00,              // ret 4
                 });
  g.flat32(0x1000);
  ASSERT_EQ(g.run().reason, ExitReason::Hlt);
  EXPECT_EQ(g.gpr(EAX), 0x11223344u);
  EXPECT_EQ(g.gpr(ESP), 0x80000u);
  EXPECT_EQ(g.regs().rip, 0x100bu);
}

}  // namespace
}  // namespace anykvm::test
