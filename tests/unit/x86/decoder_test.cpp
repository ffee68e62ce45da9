// Decoder and disassembler tests: lengths and fields of hand-assembled
// encodings (prefix soup, 16-bit addressing, SIB, moffs, immediates, the
// 15-byte limit, LOCK rules, SIMD mandatory prefixes) and Intel-syntax output.
#include <gtest/gtest.h>

#include <vector>

#include "x86/decode/decoder.h"
#include "x86/decode/disasm.h"

using namespace anykvm::x86;

namespace {

Insn dec(std::vector<uint8_t> b, unsigned mode = 32, DecodeStatus want = DecodeStatus::Ok) {
  Insn i;
  DecodeStatus st = decode(b.data(), b.size(), mode, i);
  EXPECT_EQ(int(st), int(want));
  return i;
}
std::string dis(std::vector<uint8_t> b, unsigned mode = 32, uint64_t ip = 0) {
  Insn i;
  DecodeStatus st = decode(b.data(), b.size(), mode, i);
  EXPECT_EQ(int(st), int(DecodeStatus::Ok));
  return disassemble(i, ip);
}

TEST(Decoder, SimpleLengths) {
  EXPECT_EQ(dec({0x90}).len, 1);
  EXPECT_EQ(dec({0x05, 1, 2, 3, 4}).len, 5);
  EXPECT_EQ(dec({0x66, 0x05, 1, 2}).len, 4);
  EXPECT_EQ(dec({0x05, 1, 2}, 16).len, 3);
  EXPECT_EQ(dec({0xb8, 1, 2, 3, 4}).len, 5);
  EXPECT_EQ(dec({0xea, 1, 2, 3, 4, 5, 6}).len, 7);
  EXPECT_EQ(dec({0xea, 1, 2, 3, 4}, 16).len, 5);
  EXPECT_EQ(dec({0xc8, 0x10, 0x00, 0x02}).len, 4);
  EXPECT_EQ(dec({0x0f, 0x84, 1, 2, 3, 4}).len, 6);
  EXPECT_EQ(dec({0x0f, 0x1f, 0x44, 0x00, 0x00}).len, 5);  // nop dword [eax+eax*1+0]
  EXPECT_EQ(dec({0xf7, 0x05, 1, 2, 3, 4, 5, 6, 7, 8}).len, 10);  // test dword [disp32], imm32
  EXPECT_EQ(dec({0xf7, 0x15, 1, 2, 3, 4}).len, 6);  // not dword [disp32]: no immediate
}

TEST(Decoder, ModRm32Sib) {
  // mov eax, [ebx+esi*4+0x10]
  Insn i = dec({0x8b, 0x44, 0xb3, 0x10});
  EXPECT_EQ(i.len, 4);
  EXPECT_TRUE(i.mem);
  EXPECT_EQ(i.base, 3);
  EXPECT_EQ(i.index, 6);
  EXPECT_EQ(i.scale, 2);
  EXPECT_EQ(i.disp, 0x10);
  EXPECT_EQ(i.seg, 3);
  EXPECT_EQ(i.reg, 0);
  // [esp+8]: SS default.
  i = dec({0x8b, 0x44, 0x24, 0x08});
  EXPECT_EQ(i.base, 4);
  EXPECT_EQ(i.index, k_no_reg);
  EXPECT_EQ(i.seg, 2);
  // [ebp-4]: SS default; disp8 sign-extended.
  i = dec({0x8b, 0x45, 0xfc});
  EXPECT_EQ(i.base, 5);
  EXPECT_EQ(i.disp, -4);
  EXPECT_EQ(i.seg, 2);
  // SIB with no base: [ecx*8+disp32], DS.
  i = dec({0x8b, 0x04, 0xcd, 0x78, 0x56, 0x34, 0x12});
  EXPECT_EQ(i.len, 7);
  EXPECT_EQ(i.base, k_no_reg);
  EXPECT_EQ(i.index, 1);
  EXPECT_EQ(i.scale, 3);
  EXPECT_EQ(i.disp, 0x12345678);
  EXPECT_EQ(i.seg, 3);
  // [ebp+esi] with override fs.
  i = dec({0x64, 0x8b, 0x44, 0x35, 0x00});
  EXPECT_EQ(i.seg, 4);
  EXPECT_EQ(i.seg_override, 4);
}

TEST(Decoder, ModRm16) {
  // mov ax, [bp+si+0x1234] in 16-bit mode: SS default.
  Insn i = dec({0x8b, 0x82, 0x34, 0x12}, 16);
  EXPECT_EQ(i.len, 4);
  EXPECT_EQ(i.opsize, 2);
  EXPECT_EQ(i.addrsize, 2);
  EXPECT_EQ(i.base, 5);
  EXPECT_EQ(i.index, 6);
  EXPECT_EQ(i.seg, 2);
  // [bx+di]
  i = dec({0x8b, 0x01}, 16);
  EXPECT_EQ(i.base, 3);
  EXPECT_EQ(i.index, 7);
  EXPECT_EQ(i.seg, 3);
  // [disp16]
  i = dec({0x8b, 0x06, 0xcd, 0xab}, 16);
  EXPECT_EQ(i.base, k_no_reg);
  EXPECT_EQ(i.disp, 0xabcd);
  // [bp+0] (mod=1, rm=6): SS.
  i = dec({0x8b, 0x46, 0x00}, 16);
  EXPECT_EQ(i.base, 5);
  EXPECT_EQ(i.seg, 2);
  // 67 in 32-bit code selects 16-bit addressing.
  i = dec({0x67, 0x8b, 0x00});
  EXPECT_EQ(i.addrsize, 2);
  EXPECT_EQ(i.base, 3);
  EXPECT_EQ(i.index, 6);
  EXPECT_EQ(i.len, 3);
  // 67 in 16-bit code: 32-bit SIB form.
  i = dec({0x67, 0x66, 0x8b, 0x04, 0x24}, 16);
  EXPECT_EQ(i.addrsize, 4);
  EXPECT_EQ(i.opsize, 4);
  EXPECT_EQ(i.base, 4);
  EXPECT_EQ(i.len, 5);
}

TEST(Decoder, PrefixSoup) {
  // rep, cs, es, 66, 67, fs (last override wins), movsw
  Insn i = dec({0xf3, 0x2e, 0x26, 0x66, 0x67, 0x64, 0xa5});
  EXPECT_EQ(i.len, 7);
  EXPECT_EQ(i.rep, RepPrefix::Rep);
  EXPECT_EQ(i.opsize, 2);
  EXPECT_EQ(i.addrsize, 2);
  EXPECT_EQ(i.seg, 4);
  // Repeated 66 toggles once, not per byte.
  i = dec({0x66, 0x66, 0x66, 0x40});
  EXPECT_EQ(i.opsize, 2);
  // F2 then F3: last wins.
  i = dec({0xf2, 0xf3, 0xa6});
  EXPECT_EQ(i.rep, RepPrefix::Rep);
  EXPECT_EQ(i.opsize, 1);
}

TEST(Decoder, FifteenByteLimit) {
  // 14 prefixes + nop = 15 bytes: fine.
  std::vector<uint8_t> b(14, 0x66);
  b.push_back(0x90);
  EXPECT_EQ(dec(b).len, 15);
  // 15 prefixes + nop: #GP.
  std::vector<uint8_t> c(15, 0x3e);
  c.push_back(0x90);
  dec(c, 32, DecodeStatus::TooLong);
  // 11 prefixes + add [disp32], imm32 (10 bytes): too long.
  std::vector<uint8_t> d(11, 0x2e);
  for (uint8_t x : {0x81, 0x05, 1, 2, 3, 4, 5, 6, 7, 8}) d.push_back(x);
  dec(d, 32, DecodeStatus::TooLong);
}

TEST(Decoder, TruncatedReportsNeed) {
  Insn i = dec({0x05, 1}, 32, DecodeStatus::Truncated);
  EXPECT_EQ(i.len, 5);
  i = dec({0x0f}, 32, DecodeStatus::Truncated);
  EXPECT_EQ(i.len, 2);
}

TEST(Decoder, UndefinedAndLock) {
  dec({0x0f, 0xff}, 32, DecodeStatus::Undefined);
  dec({0x0f, 0x04}, 32, DecodeStatus::Undefined);
  dec({0xfe, 0xf8}, 32, DecodeStatus::Undefined);  // FE /7
  dec({0x8f, 0xc8}, 32, DecodeStatus::Undefined);  // 8F /1
  dec({0x8d, 0xc0}, 32, DecodeStatus::Undefined);  // lea eax, eax
  // LOCK: fine on add [mem], reg; #UD on a register destination or a non-lockable op.
  EXPECT_TRUE(dec({0xf0, 0x01, 0x03}).lock);
  dec({0xf0, 0x01, 0xc3}, 32, DecodeStatus::LockInvalid);
  dec({0xf0, 0x8b, 0x03}, 32, DecodeStatus::LockInvalid);
  dec({0xf0, 0x3b, 0x03}, 32, DecodeStatus::LockInvalid);  // cmp reg, [mem]
  EXPECT_TRUE(dec({0xf0, 0x0f, 0xc7, 0x0e}).lock);         // lock cmpxchg8b [esi]
  EXPECT_TRUE(dec({0xf0, 0x0f, 0xba, 0x28, 0x05}).lock);   // lock bts dword [eax], 5
  dec({0xf0, 0x0f, 0xba, 0x20, 0x05}, 32, DecodeStatus::LockInvalid);  // lock bt
}

TEST(Decoder, GroupsAndImmediates) {
  Insn i = dec({0x83, 0xe8, 0xff});  // sub eax, -1
  EXPECT_EQ(i.reg, 5);
  EXPECT_EQ(int64_t(i.imm), -1);
  i = dec({0xc8, 0x34, 0x12, 0x03});  // enter 0x1234, 3
  EXPECT_EQ(i.imm, 0x1234u);
  EXPECT_EQ(i.imm2, 3u);
  i = dec({0x9a, 0x78, 0x56, 0x34, 0x12, 0x08, 0x00});  // call 0x8:0x12345678
  EXPECT_EQ(i.imm, 0x12345678u);
  EXPECT_EQ(i.imm2, 8u);
  i = dec({0xa1, 0x44, 0x33, 0x22, 0x11});  // mov eax, [moffs]
  EXPECT_TRUE(i.mem);
  EXPECT_FALSE(i.has_modrm);
  EXPECT_EQ(i.disp, 0x11223344);
  EXPECT_EQ(i.base, k_no_reg);
  i = dec({0xa0, 0x34, 0x12}, 16);
  EXPECT_EQ(i.len, 3);
  EXPECT_EQ(i.opsize, 1);
  i = dec({0xb4, 0x12});  // mov ah, 0x12
  EXPECT_EQ(i.reg, 4);
  EXPECT_EQ(i.opsize, 1);
  i = dec({0xeb, 0xfe});
  EXPECT_EQ(int64_t(i.imm), -2);
  i = dec({0xe6, 0x80});  // out 0x80, al: byte
  EXPECT_EQ(i.opsize, 1);
  i = dec({0xe7, 0x80});
  EXPECT_EQ(i.opsize, 4);
}

TEST(Decoder, SimdPrefixes) {
  Insn i = dec({0xf3, 0x0f, 0x10, 0xc1});  // movss xmm0, xmm1
  EXPECT_EQ(i.simd, SimdPrefix::PF3);
  EXPECT_EQ(i.rep, RepPrefix::None);
  i = dec({0x66, 0x0f, 0x6f, 0x00});  // movdqa xmm0, [eax]
  EXPECT_EQ(i.simd, SimdPrefix::P66);
  EXPECT_EQ(i.opsize, 4);
  i = dec({0x0f, 0x70, 0xc1, 0x1b});  // pshufw mm0, mm1, 0x1b
  EXPECT_EQ(i.len, 4);
  EXPECT_EQ(i.imm, 0x1bu);
  i = dec({0x66, 0x0f, 0x73, 0xd8, 0x04});  // psrldq xmm0, 4
  EXPECT_EQ(i.len, 5);
  dec({0x0f, 0x73, 0xd8, 0x04}, 32, DecodeStatus::Undefined);  // no MMX psrldq
  i = dec({0x0f, 0xae, 0xf8});  // sfence
  EXPECT_FALSE(i.mem);
  EXPECT_EQ(dis({0x0f, 0xae, 0xf8}), "sfence");
  EXPECT_EQ(dis({0x0f, 0xae, 0x38}), "clflush [eax]");
  EXPECT_EQ(dis({0xf3, 0x90}), "pause");
  EXPECT_EQ(insn_key(dec({0xf2, 0x0f, 0x58, 0xc1})).prefix, SimdPrefix::PF2);
}

TEST(Decoder, X87HasModrmNoImmediate) {
  EXPECT_EQ(dec({0xd9, 0xc0}).len, 2);
  EXPECT_EQ(dec({0xdd, 0x05, 1, 2, 3, 4}).len, 6);
  EXPECT_EQ(dec({0xdf, 0xe0}).reg, 4);
}

TEST(Disasm, IntelSyntax) {
  EXPECT_EQ(dis({0x01, 0xd8}), "add eax, ebx");
  EXPECT_EQ(dis({0x8b, 0x44, 0xb3, 0x10}), "mov eax, dword ptr [ebx+esi*4+0x10]");
  EXPECT_EQ(dis({0x8b, 0x45, 0xfc}), "mov eax, dword ptr [ebp-0x4]");
  EXPECT_EQ(dis({0x66, 0x83, 0xc0, 0x01}), "add ax, 0x1");
  EXPECT_EQ(dis({0x80, 0x38, 0x05}), "cmp byte ptr [eax], 0x5");
  EXPECT_EQ(dis({0x8b, 0x02}, 16), "mov ax, word ptr [bp+si]");
  EXPECT_EQ(dis({0xeb, 0xfe}, 32, 0x1000), "jmp 0x1000");
  EXPECT_EQ(dis({0xe8, 0x00, 0x00, 0x00, 0x00}, 32, 0x1000), "call 0x1005");
  EXPECT_EQ(dis({0xf3, 0xa5}), "rep movsd");
  EXPECT_EQ(dis({0xf3, 0xa6}), "repe cmpsb");
  EXPECT_EQ(dis({0x26, 0xac}), "lodsb es:");
  EXPECT_EQ(dis({0xea, 0x00, 0x7c, 0x00, 0x00}, 16), "jmp 0x0:0x7c00");
  EXPECT_EQ(dis({0xf0, 0x0f, 0xb1, 0x0b}), "lock cmpxchg dword ptr [ebx], ecx");
  EXPECT_EQ(dis({0x0f, 0x22, 0xc0}), "mov cr0, eax");
  EXPECT_EQ(dis({0x8e, 0xd8}), "mov ds, ax");
  EXPECT_EQ(dis({0x64, 0xa1, 0x10, 0x00, 0x00, 0x00}), "mov eax, dword ptr fs:[0x10]");
  EXPECT_EQ(dis({0xc1, 0xe0, 0x04}), "shl eax, 0x4");
  EXPECT_EQ(dis({0xd1, 0xf8}), "sar eax, 1");
  EXPECT_EQ(dis({0x66, 0x98}), "cbw");
  EXPECT_EQ(dis({0x98}), "cwde");
  EXPECT_EQ(dis({0x0f, 0xb6, 0xc4}), "movzx eax, ah");
  EXPECT_EQ(dis({0x66, 0x0f, 0xef, 0xc1}), "pxor xmm0, xmm1");
}

// Every catalogue row decodes back to itself from a canonical encoding.
TEST(Decoder, EveryRowRoundTrips) {
  auto rows = opcode_rows();
  for (size_t r = 0; r < rows.size(); ++r) {
    const OpcodeRow& row = rows[r];
    std::vector<uint8_t> b;
    if (row.prefix == RowPrefix::P66) b.push_back(0x66);
    if (row.prefix == RowPrefix::PF3) b.push_back(0xf3);
    if (row.prefix == RowPrefix::PF2) b.push_back(0xf2);
    if (row.map == OpMap::TwoByte) b.push_back(0x0f);
    b.push_back(row.opcode);
    uint8_t reg = row.group >= 0 ? uint8_t(row.group) : 0;
    if (row.group < 0 && row.map == OpMap::TwoByte && row.opcode == 0x18) reg = 4;  // hint-NOP space
    uint8_t mod = (row.attrs & A_RO) ? 3 : 0;
    if (row.op[0] == Opnd::Rd || row.op[1] == Opnd::Rd) mod = 3;
    b.push_back(uint8_t(mod << 6 | reg << 3 | 0));  // ModRM, or harmless imm/trailing byte
    for (int k = 0; k < 10; ++k) b.push_back(0);
    Insn i;
    DecodeStatus st = decode(b.data(), b.size(), 32, i);
    ASSERT_EQ(int(st), int(DecodeStatus::Ok)) << "row " << r << " " << row.mnemonic;
    const OpcodeRow& got = insn_row(i);
    EXPECT_EQ(got.opcode, row.opcode);
    EXPECT_EQ(got.map, row.map);
    EXPECT_STREQ(got.mnemonic, row.mnemonic) << "row " << r;
    EXPECT_LE(i.len, 15);
    EXPECT_FALSE(disassemble(i, 0).empty());
  }
}

}  // namespace
