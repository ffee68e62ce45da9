// Intel-syntax disassembler over the opcode catalogue: mnemonic from the row,
// operands from its operand codes (SDM vol. 2, appendix A.2 notation). String
// instructions print their size suffix, memory operands their size and segment
// override. Leaves out: x87 register-form mnemonics (printed as the memory
// form's name with st(i)).
#include "x86/decode/disasm.h"

#include <cinttypes>
#include <cstdarg>
#include <cstdio>

#include "x86/decode/decoder.h"

namespace anykvm::x86 {
namespace {

const char* const k_reg8[8] = {"al", "cl", "dl", "bl", "ah", "ch", "dh", "bh"};
const char* const k_reg16[8] = {"ax", "cx", "dx", "bx", "sp", "bp", "si", "di"};
const char* const k_reg32[8] = {"eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"};
const char* const k_sreg[8] = {"es", "cs", "ss", "ds", "fs", "gs", "?s", "?s"};

struct Out {
  char* buf;
  size_t n;
  size_t len = 0;
  void put(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = len < n ? n - len : 0;
    int w = vsnprintf(buf + len, room, fmt, ap);
    va_end(ap);
    if (w > 0) len += size_t(w);
  }
};

const char* gpr(unsigned r, unsigned size) {
  r &= 7;
  return size == 1 ? k_reg8[r] : size == 2 ? k_reg16[r] : k_reg32[r];
}

const char* size_word(unsigned size) {
  switch (size) {
    case 1: return "byte";
    case 2: return "word";
    case 4: return "dword";
    case 6: return "fword";
    case 8: return "qword";
    case 16: return "xmmword";
    default: return "";
  }
}

void hex(Out& o, int64_t v) {
  if (v < 0) o.put("-0x%" PRIx64, uint64_t(-v));
  else o.put("0x%" PRIx64, uint64_t(v));
}

void mem(Out& o, const Insn& i, unsigned size) {
  if (size) o.put("%s ptr ", size_word(size));
  if (i.seg_override != 0xff) o.put("%s:", k_sreg[i.seg_override & 7]);
  o.put("[");
  bool any = false;
  unsigned as = i.addrsize;
  if (i.base != k_no_reg) {
    o.put("%s", gpr(i.base, as));
    any = true;
  }
  if (i.index != k_no_reg) {
    o.put("%s%s", any ? "+" : "", gpr(i.index, as));
    if (i.scale) o.put("*%d", 1 << i.scale);
    any = true;
  }
  int64_t d = i.disp;
  if (as == 2 && !any) d = uint16_t(d);
  if (as == 4 && !any) d = uint32_t(d);
  if (!any) hex(o, d);
  else if (d > 0) { o.put("+"); hex(o, d); }
  else if (d < 0) hex(o, d);
  o.put("]");
}

// Memory size of an E/M operand.
unsigned e_size(Opnd op, const Insn& i) {
  switch (op) {
    case Opnd::Eb: return 1;
    case Opnd::Ew: return 2;
    case Opnd::Ev: return i.opsize;
    case Opnd::Ey: return 4;
    case Opnd::Mp: return i.opsize == 2 ? 4 : 6;
    case Opnd::Ma: return i.opsize * 2;
    case Opnd::Mq: case Opnd::Qq: return 8;
    case Opnd::Wx: return 16;
    default: return 0;
  }
}

bool operand(Out& o, Opnd op, const Insn& i, uint64_t ip, bool& imm_used) {
  unsigned vs = i.opsize == 1 ? 4 : i.opsize;
  auto imm = [&]() -> uint64_t {
    uint64_t v = imm_used ? i.imm2 : i.imm;
    imm_used = true;
    return v;
  };
  switch (op) {
    case Opnd::None: return false;
    case Opnd::Eb: case Opnd::Ew: case Opnd::Ev: case Opnd::Ey: case Opnd::M: case Opnd::Mp: case Opnd::Ma:
    case Opnd::Mq:
      if (i.mem) mem(o, i, e_size(op, i));
      else o.put("%s", gpr(i.rm, op == Opnd::Eb ? 1 : op == Opnd::Ew ? 2 : op == Opnd::Ey ? 4 : vs));
      return true;
    case Opnd::Gb: o.put("%s", gpr(i.reg, 1)); return true;
    case Opnd::Gw: o.put("%s", gpr(i.reg, 2)); return true;
    case Opnd::Gv: o.put("%s", gpr(i.reg, vs)); return true;
    case Opnd::Gy: o.put("%s", gpr(i.reg, 4)); return true;
    case Opnd::Rd: o.put("%s", gpr(i.rm, 4)); return true;
    case Opnd::Sw: o.put("%s", k_sreg[i.reg & 7]); return true;
    case Opnd::Cd: o.put("cr%d", i.reg); return true;
    case Opnd::Dd: o.put("dr%d", i.reg); return true;
    case Opnd::Ib: o.put("0x%" PRIx64, imm() & 0xff); return true;
    case Opnd::Ibs: case Opnd::Iz: case Opnd::Iv: {
      uint64_t v = imm();
      uint64_t mask = vs == 2 ? 0xffff : vs == 4 ? 0xffffffffull : ~0ull;
      o.put("0x%" PRIx64, v & mask);
      return true;
    }
    case Opnd::Iw: o.put("0x%" PRIx64, imm() & 0xffff); return true;
    case Opnd::Jb: case Opnd::Jz: {
      uint64_t t = ip + i.len + imm();
      t = vs == 2 ? (t & 0xffff) : (t & 0xffffffffull);
      o.put("0x%" PRIx64, t);
      return true;
    }
    case Opnd::Ap: {
      uint64_t off = imm();
      uint64_t sel = imm();
      o.put("0x%" PRIx64 ":0x%" PRIx64, sel, off);
      return true;
    }
    case Opnd::Ob: case Opnd::Ov: mem(o, i, op == Opnd::Ob ? 1 : vs); return true;
    case Opnd::Zb: o.put("%s", gpr(i.reg, 1)); return true;
    case Opnd::Zv: o.put("%s", gpr(i.reg, vs)); return true;
    case Opnd::AL: o.put("al"); return true;
    case Opnd::eAX: o.put("%s", gpr(0, vs)); return true;
    case Opnd::CL: o.put("cl"); return true;
    case Opnd::DX: o.put("dx"); return true;
    case Opnd::One: o.put("1"); return true;
    case Opnd::ES: case Opnd::CS: case Opnd::SS: case Opnd::DS: case Opnd::FS: case Opnd::GS:
      o.put("%s", k_sreg[unsigned(op) - unsigned(Opnd::ES)]);
      return true;
    case Opnd::Xb: case Opnd::Xv: case Opnd::Yb: case Opnd::Yv: return false;  // implicit in the mnemonic
    case Opnd::Pq: o.put("mm%d", i.reg & 7); return true;
    case Opnd::Nq: o.put("mm%d", i.rm & 7); return true;
    case Opnd::Qq:
      if (i.mem) mem(o, i, 8);
      else o.put("mm%d", i.rm & 7);
      return true;
    case Opnd::Vx: o.put("xmm%d", i.reg); return true;
    case Opnd::Ux: o.put("xmm%d", i.rm); return true;
    case Opnd::Wx:
      if (i.mem) mem(o, i, 16);
      else o.put("xmm%d", i.rm);
      return true;
  }
  return false;
}

bool is_string(Opnd o) { return o == Opnd::Xb || o == Opnd::Xv || o == Opnd::Yb || o == Opnd::Yv; }

}  // namespace

size_t disassemble(const Insn& i, uint64_t ip, char* buf, size_t n) {
  Out o{buf, n};
  if (n) buf[0] = 0;
  const OpcodeRow& r = insn_row(i);
  if (i.lock) o.put("lock ");
  bool str = is_string(r.op[0]) || is_string(r.op[1]);
  if (str && i.rep == RepPrefix::Rep) {
    bool cmp = r.opcode == 0xa6 || r.opcode == 0xa7 || r.opcode == 0xae || r.opcode == 0xaf;
    o.put(cmp ? "repe " : "rep ");
  } else if (str && i.rep == RepPrefix::Repne) {
    o.put("repne ");
  }
  // Size-dependent mnemonics.
  const char* mn = r.mnemonic;
  if (r.map == OpMap::OneByte) {
    bool w = i.opsize == 2;
    switch (r.opcode) {
      case 0x60: mn = w ? "pusha" : "pushad"; break;
      case 0x61: mn = w ? "popa" : "popad"; break;
      case 0x98: mn = w ? "cbw" : "cwde"; break;
      case 0x99: mn = w ? "cwd" : "cdq"; break;
      case 0x9c: mn = w ? "pushf" : "pushfd"; break;
      case 0x9d: mn = w ? "popf" : "popfd"; break;
      case 0xcf: mn = w ? "iret" : "iretd"; break;
      case 0xe3: mn = i.addrsize == 2 ? "jcxz" : "jecxz"; break;
      default: break;
    }
  }
  if (r.map == OpMap::TwoByte && r.opcode == 0x01 && r.group == 2 && !i.mem && i.rm == 1) mn = "xsetbv";
  o.put("%s", mn);
  if (str && !(r.op[0] == Opnd::Yb || r.op[0] == Opnd::Xb || r.op[1] == Opnd::Xb || r.op[1] == Opnd::Yb))
    o.put("%c", i.opsize == 2 ? 'w' : 'd');
  // A segment override on a string instruction has no operand to print on.
  if (str && i.seg_override != 0xff) o.put(" %s:", k_sreg[i.seg_override & 7]);
  bool first = true, imm_used = false;
  for (Opnd op : r.op) {
    if (op == Opnd::None || is_string(op)) continue;
    if (str && (op == Opnd::AL || op == Opnd::eAX || op == Opnd::DX)) continue;
    o.put(first ? " " : ", ");
    first = false;
    operand(o, op, i, ip, imm_used);
  }
  if (r.map == OpMap::OneByte && r.opcode >= 0xd8 && r.opcode <= 0xdf) {
    if (i.mem) {
      o.put(" ");
      mem(o, i, 0);
    } else {
      o.put(" st(%d)", i.rm & 7);
    }
  }
  return o.len < n ? o.len : (n ? n - 1 : 0);
}

std::string disassemble(const Insn& i, uint64_t ip) {
  char buf[128];
  disassemble(i, ip, buf, sizeof buf);
  return buf;
}

}  // namespace anykvm::x86
