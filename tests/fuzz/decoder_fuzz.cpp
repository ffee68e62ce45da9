// libFuzzer target for the decoder and disassembler (src/x86/decode/). Input:
// byte 0 picks the code size (bit 0: 16 or 32), the rest are instruction bytes.
// Invariants: no crash; a decoded instruction is 1..15 bytes and no longer
// than the bytes given (Truncated reports how many it needs, still <= 15);
// decoding is deterministic and looks at no byte past Insn::len (the same
// bytes cut to exactly len decode to the same Insn, one byte fewer is
// Truncated); the disassembly names the mnemonic of the decoded row.
#include <cstring>
#include <string>

#include "fuzz_check.h"
#include "x86/decode/decoder.h"
#include "x86/decode/disasm.h"

using namespace anykvm::x86;

namespace {

bool same(const Insn& a, const Insn& b) {
  return a.op == b.op && a.len == b.len && a.opsize == b.opsize && a.addrsize == b.addrsize && a.seg == b.seg &&
         a.seg_override == b.seg_override && a.rep == b.rep && a.simd == b.simd && a.lock == b.lock &&
         a.has_modrm == b.has_modrm && a.mem == b.mem && a.opcode == b.opcode && a.map == b.map &&
         a.modrm == b.modrm && a.reg == b.reg && a.rm == b.rm && a.base == b.base && a.index == b.index &&
         a.scale == b.scale && a.rip_relative == b.rip_relative && a.disp == b.disp && a.imm == b.imm &&
         a.imm2 == b.imm2;
}

// Mnemonics the disassembler spells by operand or address size instead of the
// row's name (disasm.cpp).
bool size_dependent_name(const OpcodeRow& r, const Insn& i) {
  if (r.map == OpMap::OneByte) {
    switch (r.opcode) {
      case 0x60: case 0x61: case 0x98: case 0x99: case 0x9c: case 0x9d: case 0xcf: case 0xe3: return true;
      default: return false;
    }
  }
  return r.map == OpMap::TwoByte && r.opcode == 0x01 && r.group == 2 && !i.mem && i.rm == 1;  // xsetbv
}

void check_disasm(const Insn& in, uint64_t ip) {
  const OpcodeRow& row = insn_row(in);
  char buf[160];
  std::memset(buf, 0x55, sizeof buf);
  size_t n = disassemble(in, ip, buf, sizeof buf);
  FUZZ_CHECK(n < sizeof buf && buf[n] == 0, "length %zu", n);
  FUZZ_CHECK(std::strlen(buf) == n, "length %zu vs strlen %zu", n, std::strlen(buf));
  std::string s(buf);
  FUZZ_CHECK(s == disassemble(in, ip), "two disassemblies differ: %s", buf);
  // A small buffer truncates and stays NUL-terminated.
  char small[8];
  size_t m = disassemble(in, ip, small, sizeof small);
  FUZZ_CHECK(m < sizeof small && small[m] == 0 && s.compare(0, m, small) == 0, "truncated form '%s' of '%s'", small,
             buf);
  // Strip the prefixes the disassembler prints, then the first word must be
  // the row's mnemonic (string forms add a b/w/d suffix).
  for (const char* p : {"lock ", "rep ", "repe ", "repne "})
    if (s.rfind(p, 0) == 0) s.erase(0, std::strlen(p));
  for (const char* p : {"rep ", "repe ", "repne "})
    if (s.rfind(p, 0) == 0) s.erase(0, std::strlen(p));
  std::string word = s.substr(0, s.find(' '));
  FUZZ_CHECK(!word.empty(), "empty mnemonic in '%s'", buf);
  if (!size_dependent_name(row, in)) {
    FUZZ_CHECK(word.rfind(row.mnemonic, 0) == 0 && word.size() <= std::strlen(row.mnemonic) + 1,
               "disassembly '%s' does not name the row's mnemonic '%s'", buf, row.mnemonic);
  }
  FUZZ_CHECK((in.lock && std::strncmp(buf, "lock ", 5) == 0) || (!in.lock && std::strncmp(buf, "lock ", 5) != 0),
             "lock prefix %d but disassembly '%s'", int(in.lock), buf);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const unsigned mode = (data[0] & 1) ? 32 : 16;
  const uint8_t* bytes = data + 1;
  const size_t avail = size - 1;

  Insn a;
  DecodeStatus st = decode(bytes, avail, mode, a);
  switch (st) {
    case DecodeStatus::Ok: {
      FUZZ_CHECK(a.len >= 1 && a.len <= k_max_insn_len, "len %u", a.len);
      FUZZ_CHECK(a.len <= avail, "len %u > %zu bytes given", a.len, avail);
      FUZZ_CHECK(a.op < opcode_rows().size(), "row %u", a.op);
      const OpcodeRow& row = insn_row(a);
      FUZZ_CHECK(row.map == a.map && row.opcode == a.opcode, "row %u is %02x, insn opcode %02x", a.op, row.opcode,
                 a.opcode);
      FUZZ_CHECK(row.group < 0 || (a.has_modrm && row.group == a.reg), "group row %d, reg %u", row.group, a.reg);
      FUZZ_CHECK(a.opsize == 1 || a.opsize == 2 || a.opsize == 4, "opsize %u", a.opsize);
      FUZZ_CHECK(a.addrsize == 2 || a.addrsize == 4, "addrsize %u", a.addrsize);
      FUZZ_CHECK(a.seg < 6, "seg %u", a.seg);
      FUZZ_CHECK(!a.lock || a.mem, "LOCK accepted on a register form");
      // Deterministic, and blind to the bytes past the instruction.
      Insn b;
      FUZZ_CHECK(decode(bytes, avail, mode, b) == DecodeStatus::Ok && same(a, b), "second decode differs");
      uint8_t exact[k_max_insn_len];
      std::memcpy(exact, bytes, a.len);
      Insn c;
      FUZZ_CHECK(decode(exact, a.len, mode, c) == DecodeStatus::Ok && same(a, c),
                 "decode with exactly len=%u bytes differs", a.len);
      Insn d;
      DecodeStatus sd = decode(exact, a.len - 1u, mode, d);
      FUZZ_CHECK(sd == DecodeStatus::Truncated && d.len > a.len - 1u && d.len <= a.len,
                 "decode of len-1 bytes: status %d needs %u (len %u)", int(sd), d.len, a.len);
      check_disasm(a, 0);
      check_disasm(a, mode == 16 ? 0xfff0 : 0xfffffff0u);
      break;
    }
    case DecodeStatus::Truncated: {
      FUZZ_CHECK(a.len > avail && a.len <= k_max_insn_len, "Truncated needs %u of %zu", a.len, avail);
      // With the 15 bytes the architecture allows, it is never short.
      uint8_t full[k_max_insn_len] = {};
      std::memcpy(full, bytes, avail);
      Insn e;
      DecodeStatus se = decode(full, k_max_insn_len, mode, e);
      FUZZ_CHECK(se != DecodeStatus::Truncated, "Truncated with 15 bytes");
      FUZZ_CHECK(se != DecodeStatus::Ok || e.len >= a.len, "needed %u, decodes in %u", a.len, e.len);
      break;
    }
    case DecodeStatus::TooLong:
    case DecodeStatus::Undefined:
    case DecodeStatus::LockInvalid:
      FUZZ_CHECK(a.len <= k_max_insn_len && a.len <= avail, "status %d len %u of %zu", int(st), a.len, avail);
      break;
  }
  return 0;
}
