// vCPU ioctls: register state conversions between the uAPI structs and the
// engine's cpu:: types, and KVM_RUN (the kvm_run contract of
// Documentation/virt/kvm/api.rst and the QEMU 7.2 contract §3). Linux 6.1
// argument checks and errno. Each vCPU's calls are serialised by its mutex.
#include <linux/kvm.h>
#include <signal.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <vector>

#include "kvmapi/handles.h"
#include "kvmapi/usercopy.h"

extern "C" const uint32_t anykvm_ioctl_numbers[];

namespace anykvm::kvmapi {

namespace {

using cpu::Gpr;

// kvm_regs lists rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8..r15; the engine
// indexes GPRs by their encoding.
constexpr Gpr k_kvm_regs_order[16] = {Gpr::Rax, Gpr::Rbx, Gpr::Rcx, Gpr::Rdx, Gpr::Rsi, Gpr::Rdi,
                                      Gpr::Rsp, Gpr::Rbp, Gpr::R8,  Gpr::R9,  Gpr::R10, Gpr::R11,
                                      Gpr::R12, Gpr::R13, Gpr::R14, Gpr::R15};

void to_kvm(const cpu::Regs& r, kvm_regs& k) {
  __u64* dst = &k.rax;
  for (int i = 0; i < 16; ++i) dst[i] = r.gpr[size_t(k_kvm_regs_order[i])];
  k.rip = r.rip;
  k.rflags = r.rflags;
}

void from_kvm(const kvm_regs& k, cpu::Regs& r) {
  const __u64* src = &k.rax;
  for (int i = 0; i < 16; ++i) r.gpr[size_t(k_kvm_regs_order[i])] = src[i];
  r.rip = k.rip;
  r.rflags = k.rflags;
}

void to_kvm(const cpu::Segment& s, kvm_segment& k) {
  k = kvm_segment{};
  k.base = s.base;
  k.limit = s.limit;
  k.selector = s.selector;
  k.type = s.type;
  k.present = s.present;
  k.dpl = s.dpl;
  k.db = s.db;
  k.s = s.s;
  k.l = s.l;
  k.g = s.g;
  k.avl = s.avl;
  k.unusable = s.unusable;
}

void from_kvm(const kvm_segment& k, cpu::Segment& s) {
  s.base = k.base;
  s.limit = k.limit;
  s.selector = k.selector;
  s.type = k.type;
  s.present = k.present;
  s.dpl = k.dpl;
  s.db = k.db;
  s.s = k.s;
  s.l = k.l;
  s.g = k.g;
  s.avl = k.avl;
  s.unusable = k.unusable;
}

using cpu::SegReg;

void to_kvm(const cpu::SpecialRegs& s, kvm_sregs& k) {
  k = kvm_sregs{};
  to_kvm(s.seg[size_t(SegReg::Cs)], k.cs);
  to_kvm(s.seg[size_t(SegReg::Ds)], k.ds);
  to_kvm(s.seg[size_t(SegReg::Es)], k.es);
  to_kvm(s.seg[size_t(SegReg::Fs)], k.fs);
  to_kvm(s.seg[size_t(SegReg::Gs)], k.gs);
  to_kvm(s.seg[size_t(SegReg::Ss)], k.ss);
  to_kvm(s.tr, k.tr);
  to_kvm(s.ldt, k.ldt);
  k.gdt.base = s.gdt.base;
  k.gdt.limit = s.gdt.limit;
  k.idt.base = s.idt.base;
  k.idt.limit = s.idt.limit;
  k.cr0 = s.cr0;
  k.cr2 = s.cr2;
  k.cr3 = s.cr3;
  k.cr4 = s.cr4;
  k.cr8 = s.cr8;
  k.efer = s.efer;
  k.apic_base = s.apic_base;
  for (int i = 0; i < 4; ++i) k.interrupt_bitmap[i] = s.interrupt_bitmap[i];
}

void from_kvm(const kvm_sregs& k, cpu::SpecialRegs& s) {
  from_kvm(k.cs, s.seg[size_t(SegReg::Cs)]);
  from_kvm(k.ds, s.seg[size_t(SegReg::Ds)]);
  from_kvm(k.es, s.seg[size_t(SegReg::Es)]);
  from_kvm(k.fs, s.seg[size_t(SegReg::Fs)]);
  from_kvm(k.gs, s.seg[size_t(SegReg::Gs)]);
  from_kvm(k.ss, s.seg[size_t(SegReg::Ss)]);
  from_kvm(k.tr, s.tr);
  from_kvm(k.ldt, s.ldt);
  s.gdt.base = k.gdt.base;
  s.gdt.limit = k.gdt.limit;
  s.idt.base = k.idt.base;
  s.idt.limit = k.idt.limit;
  s.cr0 = k.cr0;
  s.cr2 = k.cr2;
  s.cr3 = k.cr3;
  s.cr4 = k.cr4;
  s.cr8 = k.cr8;
  s.efer = k.efer;
  s.apic_base = k.apic_base;
  for (int i = 0; i < 4; ++i) s.interrupt_bitmap[i] = k.interrupt_bitmap[i];
}

// FXSAVE legacy-area offsets (SDM vol. 1, 10.5.1, table 10-2).
enum FxOffset : size_t { FxFcw = 0, FxFsw = 2, FxFtw = 4, FxFop = 6, FxFip = 8, FxFdp = 16, FxMxcsr = 24,
                         FxSt0 = 32, FxXmm0 = 160 };

template <typename T>
T get_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <typename T>
void put_le(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

// kvm_arch_vcpu_ioctl_get_fpu/set_fpu copy every field but MXCSR: GET
// leaves kvm_fpu.mxcsr 0 (the struct is zeroed) and SET ignores it. MXCSR
// travels through KVM_GET/SET_XSAVE only.
void to_kvm(const cpu::FpuState& f, kvm_fpu& k) {
  k = kvm_fpu{};
  const uint8_t* x = f.fxsave.data();
  for (int i = 0; i < 8; ++i) std::memcpy(k.fpr[i], x + FxSt0 + 16 * i, 16);
  k.fcw = get_le<uint16_t>(x + FxFcw);
  k.fsw = get_le<uint16_t>(x + FxFsw);
  k.ftwx = x[FxFtw];
  k.last_opcode = get_le<uint16_t>(x + FxFop);
  k.last_ip = get_le<uint64_t>(x + FxFip);
  k.last_dp = get_le<uint64_t>(x + FxFdp);
  for (int i = 0; i < 16; ++i) std::memcpy(k.xmm[i], x + FxXmm0 + 16 * i, 16);
}

void from_kvm(const kvm_fpu& k, cpu::FpuState& f) {
  uint8_t* x = f.fxsave.data();
  for (int i = 0; i < 8; ++i) std::memcpy(x + FxSt0 + 16 * i, k.fpr[i], 16);
  put_le<uint16_t>(x + FxFcw, k.fcw);
  put_le<uint16_t>(x + FxFsw, k.fsw);
  x[FxFtw] = k.ftwx;
  put_le<uint16_t>(x + FxFop, k.last_opcode);
  put_le<uint64_t>(x + FxFip, k.last_ip);
  put_le<uint64_t>(x + FxFdp, k.last_dp);
  for (int i = 0; i < 16; ++i) std::memcpy(x + FxXmm0 + 16 * i, k.xmm[i], 16);
}

// struct kvm_xsave as the kernel fills it (arch/x86/kernel/fpu/xstate.c
// __copy_xstate_to_uabi_buf, XSTATE_COPY_XSAVE): the legacy region, with the
// initial values for a component not in XSTATE_BV; bytes 416-463 zero;
// sw_reserved (464-511) is struct _fpx_sw_bytes describing the XSAVE layout of
// the CPU the guest sees (x87 | SSE, 576 bytes); the header; zeros to 4096.
// The size is spelled out: C++ sizes the struct's flexible tail differently.
constexpr size_t k_xsave_size = 4096, k_xsave_header = 512, k_xsave_sw = 464, k_xsave_legacy_used = 416;
constexpr uint32_t k_fp_xstate_magic1 = 0x46505853, k_fp_xstate_magic2_size = 4;
constexpr uint64_t k_xfeature_fp = 1, k_xfeature_sse = 2;
constexpr uint32_t k_mxcsr_default = 0x1f80;

// KVM_GET_SUPPORTED_CPUID leaf 0xD.0: EDX:EAX the XCR0 bits KVM supports
// (kvm_caps.supported_xcr0), ECX the XSAVE area size they need.
cpu::CpuidEntry supported_xsave_leaf() {
  for (const cpu::CpuidEntry& e : cpu::soft_supported_cpuid())
    if (e.function == 0xd && e.index == 0) return e;
  return cpu::CpuidEntry{0xd, 0, 0, uint32_t(k_xfeature_fp), 512 + 64, 512 + 64, 0};
}
uint64_t supported_xcr0() {
  const cpu::CpuidEntry e = supported_xsave_leaf();
  return uint64_t(e.edx) << 32 | e.eax;
}

void to_kvm_xsave(const cpu::FpuState& f, uint8_t out[k_xsave_size]) {
  std::memset(out, 0, k_xsave_size);
  std::memcpy(out, f.fxsave.data(), k_xsave_legacy_used);
  const uint64_t bv = f.xstate_bv & supported_xcr0();
  if (!(bv & k_xfeature_fp)) {
    // The initial x87 state: FCW 037FH, everything else (abridged tags: all empty) 0.
    std::memset(out, 0, FxMxcsr);
    std::memset(out + FxSt0, 0, FxXmm0 - FxSt0);
    put_le<uint16_t>(out + FxFcw, 0x037f);
  }
  if (!(bv & k_xfeature_sse)) {
    put_le<uint32_t>(out + FxMxcsr, k_mxcsr_default);  // MXCSR_MASK stays: init_fpstate has the CPU's
    std::memset(out + FxXmm0, 0, k_xsave_legacy_used - FxXmm0);
  }
  const uint32_t size = supported_xsave_leaf().ecx;
  put_le<uint32_t>(out + k_xsave_sw, k_fp_xstate_magic1);
  put_le<uint32_t>(out + k_xsave_sw + 4, size + k_fp_xstate_magic2_size);  // extended_size
  put_le<uint64_t>(out + k_xsave_sw + 8, supported_xcr0());                 // xfeatures
  put_le<uint32_t>(out + k_xsave_sw + 16, size);                            // xstate_size
  put_le<uint64_t>(out + k_xsave_header, bv);
}

template <typename T>
long get_struct(unsigned long arg, const T& v) {
  return copy_to_user(arg, &v, sizeof(T)) ? 0 : -EFAULT;
}
template <typename T>
bool read_struct(unsigned long arg, T& v) {
  return copy_from_user(&v, arg, sizeof(T));
}

machine::Vcpu& vcpu_of(Handle& h) { return *h.vcpu; }

long ioctl_Vcpu_GET_REGS(Handle& h, unsigned long arg) {
  kvm_regs k;
  to_kvm(vcpu_of(h).backend().get_regs(), k);
  return get_struct(arg, k);
}

long ioctl_Vcpu_SET_REGS(Handle& h, unsigned long arg) {
  kvm_regs k;
  if (!read_struct(arg, k)) return -EFAULT;
  cpu::Regs r;
  from_kvm(k, r);
  vcpu_of(h).backend().set_regs(r);
  return 0;
}

long ioctl_Vcpu_GET_SREGS(Handle& h, unsigned long arg) {
  kvm_sregs k;
  to_kvm(vcpu_of(h).backend().get_sregs(), k);
  if (machine::VcpuIrq* irq = h.vcpu->irq) {  // in-kernel LAPIC: kvm_get_cr8 / kvm_get_apic_base
    k.cr8 = h.vm->irqchip()->cr8(*irq);
    k.apic_base = h.vm->irqchip()->apic_base(*irq);
  }
  return get_struct(arg, k);
}

constexpr uint64_t k_efer_lme = 1u << 8, k_efer_lma = 1u << 10;
constexpr uint64_t k_cr0_pe = 1u << 0, k_cr0_nw = 1u << 29, k_cr0_cd = 1u << 30, k_cr0_pg = 1u << 31,
                   k_cr4_pae = 1u << 5;

// CR4_RESERVED_BITS (arch/x86/include/asm/kvm_host.h, 6.1): every bit but
// VME PVI TSD DE PSE PAE MCE PGE PCE OSFXSR OSXMMEXCPT UMIP LA57 VMXE FSGSBASE
// PCIDE OSXSAVE SMEP SMAP PKE. (Linux also reserves those the guest's CPUID
// lacks; not checked here, see docs/abi-differences.md.)
constexpr uint64_t k_cr4_reserved =
    ~uint64_t((1u << 0) | (1u << 1) | (1u << 2) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 7) |
              (1u << 8) | (1u << 9) | (1u << 10) | (1u << 11) | (1u << 12) | (1u << 13) | (1u << 16) | (1u << 17) |
              (1u << 18) | (1u << 20) | (1u << 21) | (1u << 22));

const cpu::CpuidEntry* find_cpuid(const std::vector<cpu::CpuidEntry>& t, uint32_t function) {
  for (const auto& e : t)
    if (e.function == function) return &e;
  return nullptr;
}

// kvm_set_apic_base for a host-initiated write: reserved bits are 0-7 and 9
// (0x2ff), those at or above the guest's MAXPHYADDR (cpuid_query_maxphyaddr:
// 0x80000008.EAX[7:0], else 36), and EXTD unless the guest's CPUID has x2APIC;
// EXTD without EN is an invalid mode.
bool valid_apic_base(const std::vector<cpu::CpuidEntry>& cpuid, uint64_t v) {
  constexpr uint64_t k_en = 1u << 11, k_extd = 1u << 10;
  unsigned maxphyaddr = 36;
  const cpu::CpuidEntry* top = find_cpuid(cpuid, 0x80000000);
  if (const cpu::CpuidEntry* e = find_cpuid(cpuid, 0x80000008); top && top->eax >= 0x80000008 && e)
    maxphyaddr = e->eax & 0xff;
  uint64_t reserved = 0x2ff;
  if (maxphyaddr < 64) reserved |= ~uint64_t(0) << maxphyaddr;
  const cpu::CpuidEntry* leaf1 = find_cpuid(cpuid, 1);
  if (!leaf1 || !(leaf1->ecx & (1u << 21))) reserved |= k_extd;
  if (v & reserved) return false;
  return !((v & k_extd) && !(v & k_en));
}

long ioctl_Vcpu_SET_SREGS(Handle& h, unsigned long arg) {
  kvm_sregs k;
  if (!read_struct(arg, k)) return -EFAULT;
  // kvm_is_valid_sregs (x86.c), with kvm_is_valid_cr0.
  if ((k.efer & k_efer_lme) && (k.cr0 & k_cr0_pg)) {
    if (!(k.cr4 & k_cr4_pae) || !(k.efer & k_efer_lma)) return -EINVAL;
  } else if ((k.efer & k_efer_lma) || k.cs.l) {
    return -EINVAL;  // not in 64-bit mode: no LMA, no 64-bit code segment
  }
  if (k.cr0 >> 32) return -EINVAL;
  if ((k.cr0 & k_cr0_nw) && !(k.cr0 & k_cr0_cd)) return -EINVAL;
  if ((k.cr0 & k_cr0_pg) && !(k.cr0 & k_cr0_pe)) return -EINVAL;
  if (k.cr4 & k_cr4_reserved) return -EINVAL;  // kvm_is_valid_cr4, the fixed part
  if (!valid_apic_base(h.vcpu->cpuid, k.apic_base)) return -EINVAL;  // kvm_set_apic_base
  cpu::SpecialRegs s;
  from_kvm(k, s);
  if (machine::VcpuIrq* irq = h.vcpu->irq) {  // in-kernel LAPIC: kvm_set_apic_base, kvm_set_cr8
    if (!h.vm->irqchip()->set_apic_base(*irq, k.apic_base)) return -EINVAL;
    h.vm->irqchip()->set_cr8(*irq, uint8_t(k.cr8 & 0xf));
  }
  return vcpu_of(h).backend().set_sregs(s) ? 0 : -EINVAL;
}

long ioctl_Vcpu_GET_FPU(Handle& h, unsigned long arg) {
  kvm_fpu k;
  to_kvm(vcpu_of(h).backend().get_fpu(), k);
  return get_struct(arg, k);
}

long ioctl_Vcpu_SET_FPU(Handle& h, unsigned long arg) {
  kvm_fpu k;
  if (!read_struct(arg, k)) return -EFAULT;
  cpu::FpuState f = vcpu_of(h).backend().get_fpu();
  from_kvm(k, f);
  return vcpu_of(h).backend().set_fpu(f) ? 0 : -EINVAL;
}

long ioctl_Vcpu_GET_XSAVE(Handle& h, unsigned long arg) {
  uint8_t buf[k_xsave_size];
  to_kvm_xsave(vcpu_of(h).backend().get_fpu(), buf);
  return copy_to_user(arg, buf, sizeof buf) ? 0 : -EFAULT;
}

// KVM_GET_XSAVE2 (5.17+): guest_fpu.uabi_size bytes, which KVM_CHECK_EXTENSION
// (KVM_CAP_XSAVE2) reports; at least sizeof(struct kvm_xsave). The engine's
// features (x87 | SSE) need 576, so the size and the contents are GET_XSAVE's.
long ioctl_Vcpu_GET_XSAVE2(Handle& h, unsigned long arg) { return ioctl_Vcpu_GET_XSAVE(h, arg); }

// fpu_copy_uabi_to_guest_fpstate and copy_uabi_to_xstate (6.1): EINVAL for
// a feature bit KVM does not support, a nonzero XCOMP_BV or reserved header
// byte, or reserved MXCSR bits when x87 or SSE is in XSTATE_BV.
long ioctl_Vcpu_SET_XSAVE(Handle& h, unsigned long arg) {
  uint8_t buf[k_xsave_size];
  if (!copy_from_user(buf, arg, sizeof buf)) return -EFAULT;
  const uint64_t bv = get_le<uint64_t>(buf + k_xsave_header);
  if (bv & ~supported_xcr0()) return -EINVAL;
  for (size_t i = k_xsave_header + 8; i < k_xsave_header + 64; ++i)
    if (buf[i]) return -EINVAL;
  cpu::VcpuBackend& b = vcpu_of(h).backend();
  cpu::FpuState f = b.get_fpu();
  const uint32_t mxcsr_mask = get_le<uint32_t>(f.fxsave.data() + FxMxcsr + 4);
  if ((bv & (k_xfeature_fp | k_xfeature_sse)) && (get_le<uint32_t>(buf + FxMxcsr) & ~mxcsr_mask)) return -EINVAL;
  std::memcpy(f.fxsave.data(), buf, f.fxsave.size());
  f.xstate_bv = bv;
  b.set_xsave(f);
  return 0;
}

long ioctl_Vcpu_GET_XCRS(Handle& h, unsigned long arg) {
  kvm_xcrs x{};
  x.nr_xcrs = 1;
  x.xcrs[0].xcr = 0;  // XCR_XFEATURE_ENABLED_MASK
  x.xcrs[0].value = vcpu_of(h).backend().get_fpu().xcr0;
  return get_struct(arg, x);
}

// kvm_vcpu_ioctl_x86_set_xcrs: EINVAL for more than KVM_MAX_XCRS entries,
// nonzero flags, or an invalid XCR0 (the first entry for XCR 0 counts;
// entries for other XCRs are ignored).
long ioctl_Vcpu_SET_XCRS(Handle& h, unsigned long arg) {
  kvm_xcrs x;
  if (!read_struct(arg, x)) return -EFAULT;
  if (x.nr_xcrs > KVM_MAX_XCRS || x.flags) return -EINVAL;
  for (uint32_t i = 0; i < x.nr_xcrs; ++i) {
    if (x.xcrs[i].xcr != 0) continue;
    return vcpu_of(h).backend().set_xcr0(x.xcrs[i].value) ? 0 : -EINVAL;
  }
  return 0;
}

constexpr uint32_t k_max_io_msrs = 256;  // MAX_IO_MSRS

// msr_io(): processes entries in order and returns how many succeeded.
long msr_io(Handle& h, unsigned long arg, bool write) {
  kvm_msrs hdr;
  if (!copy_from_user(&hdr, arg, anykvm_off_msrs_entries)) return -EFAULT;
  if (hdr.nmsrs >= k_max_io_msrs) return -E2BIG;
  std::vector<kvm_msr_entry> e(hdr.nmsrs);
  if (!copy_from_user(e.data(), arg + anykvm_off_msrs_entries, e.size() * sizeof(kvm_msr_entry))) return -EFAULT;
  cpu::VcpuBackend& b = vcpu_of(h).backend();
  uint32_t n = 0;
  for (; n < hdr.nmsrs; ++n) {
    uint64_t v = e[n].data;
    bool ok = write ? b.set_msr(e[n].index, v) : b.get_msr(e[n].index, v);
    if (!ok) break;
    e[n].data = v;
  }
  if (!write && !copy_to_user(arg + anykvm_off_msrs_entries, e.data(), e.size() * sizeof(kvm_msr_entry))) return -EFAULT;
  return n;
}

long ioctl_Vcpu_GET_MSRS(Handle& h, unsigned long arg) { return msr_io(h, arg, false); }
long ioctl_Vcpu_SET_MSRS(Handle& h, unsigned long arg) { return msr_io(h, arg, true); }

constexpr uint32_t k_max_cpuid_entries = 256;

long ioctl_Vcpu_SET_CPUID2(Handle& h, unsigned long arg) {
  kvm_cpuid2 hdr;
  if (!copy_from_user(&hdr, arg, anykvm_off_cpuid2_entries)) return -EFAULT;
  if (hdr.nent > k_max_cpuid_entries) return -E2BIG;
  std::vector<kvm_cpuid_entry2> e(hdr.nent);
  if (!copy_from_user(e.data(), arg + anykvm_off_cpuid2_entries, e.size() * sizeof(kvm_cpuid_entry2))) return -EFAULT;
  std::vector<cpu::CpuidEntry> out;
  for (const auto& x : e) out.push_back({x.function, x.index, x.flags, x.eax, x.ebx, x.ecx, x.edx});
  h.vcpu->cpuid = out;
  if (h.vcpu->irq) {
    // kvm_vcpu_after_set_cpuid: leaf 1 decides whether the LVT timer's
    // TSC-deadline mode is writable (CPUID.1:ECX[24]); no leaf 1, no change.
    constexpr uint32_t k_cpuid1_ecx_tsc_deadline = 1u << 24;
    for (const cpu::CpuidEntry& x : out)
      if (x.function == 1) {
        h.vcpu->irq->lapic().set_tsc_deadline_mode_allowed(x.ecx & k_cpuid1_ecx_tsc_deadline);
        break;
      }
  }
  vcpu_of(h).backend().set_cpuid(std::move(out));
  return 0;
}

long ioctl_Vcpu_GET_CPUID2(Handle& h, unsigned long arg) {
  kvm_cpuid2 hdr;
  if (!copy_from_user(&hdr, arg, anykvm_off_cpuid2_entries)) return -EFAULT;
  const auto& tab = h.vcpu->cpuid;
  // kvm_vcpu_ioctl_get_cpuid2 (6.1): E2BIG without copying the count back;
  // on success the header is copied back unchanged (later kernels set nent).
  if (hdr.nent < tab.size()) return -E2BIG;
  if (!copy_cpuid_entries_to_user(arg, tab)) return -EFAULT;
  return copy_to_user(arg, &hdr, anykvm_off_cpuid2_entries) ? 0 : -EFAULT;
}


long ioctl_Vcpu_GET_MP_STATE(Handle& h, unsigned long arg) {
  machine::Vcpu& v = vcpu_of(h);
  // kvm_arch_vcpu_ioctl_get_mpstate: kvm_apic_accept_events first, so a
  // latched INIT/SIPI is acted on (the vCPU reset or started) and reported.
  if (v.irq) v.backend().accept_events();
  kvm_mp_state m{uint32_t(v.backend().get_mp_state())};
  return get_struct(arg, m);
}

long ioctl_Vcpu_SET_MP_STATE(Handle& h, unsigned long arg) {
  kvm_mp_state m;
  if (!read_struct(arg, m)) return -EFAULT;
  // kvm_arch_vcpu_ioctl_set_mpstate: RUNNABLE always; the INIT/SIPI and halt
  // states need an in-kernel LAPIC; anything else is EINVAL.
  switch (m.mp_state) {
    case KVM_MP_STATE_RUNNABLE:
      break;
    case KVM_MP_STATE_UNINITIALIZED:
    case KVM_MP_STATE_INIT_RECEIVED:
    case KVM_MP_STATE_HALTED:
    case KVM_MP_STATE_SIPI_RECEIVED:
      if (!h.vcpu->irq) return -EINVAL;
      break;
    default:  // KVM_MP_STATE_AP_RESET_HOLD (SEV-ES only) is not served here
      return -EINVAL;
  }
  // SIPI_RECEIVED is INIT_RECEIVED with a SIPI latched at the LAPIC's last
  // SIPI vector; the engine keeps it as SipiReceived until it accepts events.
  vcpu_of(h).backend().set_mp_state(cpu::MpState(m.mp_state));
  return 0;
}

long ioctl_Vcpu_GET_VCPU_EVENTS(Handle& h, unsigned long arg) {
  cpu::Events e = vcpu_of(h).backend().get_events();
  kvm_vcpu_events k{};
  k.exception.injected = e.exception_injected;
  k.exception.nr = e.exception_nr;
  k.exception.has_error_code = e.exception_has_error_code;
  k.exception.error_code = e.exception_error_code;
  k.interrupt.injected = e.interrupt_injected;
  k.interrupt.nr = e.interrupt_nr;
  k.interrupt.soft = e.interrupt_soft;
  k.interrupt.shadow = e.interrupt_shadow;
  k.nmi.injected = e.nmi_injected;
  k.nmi.pending = e.nmi_pending;
  k.nmi.masked = e.nmi_masked;
  // kvm_vcpu_ioctl_x86_get_vcpu_events: these three are always valid (no SMM here: smi.* are 0).
  k.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
  return get_struct(arg, k);
}

long ioctl_Vcpu_SET_VCPU_EVENTS(Handle& h, unsigned long arg) {
  kvm_vcpu_events k;
  if (!read_struct(arg, k)) return -EFAULT;
  constexpr uint32_t valid = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |
                             KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
  if (k.flags & ~valid) return -EINVAL;  // PAYLOAD / TRIPLE_FAULT need caps we do not report
  k.exception.pending = 0;  // without KVM_VCPUEVENT_VALID_PAYLOAD, 6.1 ignores it
  if (k.exception.injected && (k.exception.nr > 31 || k.exception.nr == 2)) return -EINVAL;
  cpu::VcpuBackend& b = vcpu_of(h).backend();
  cpu::Events e = b.get_events();
  e.exception_injected = k.exception.injected;
  e.exception_nr = k.exception.nr;
  e.exception_has_error_code = k.exception.has_error_code;
  e.exception_error_code = k.exception.error_code;
  e.interrupt_injected = k.interrupt.injected;
  e.interrupt_nr = k.interrupt.nr;
  e.interrupt_soft = k.interrupt.soft;
  if (k.flags & KVM_VCPUEVENT_VALID_SHADOW) e.interrupt_shadow = k.interrupt.shadow;
  e.nmi_injected = k.nmi.injected;
  if (k.flags & KVM_VCPUEVENT_VALID_NMI_PENDING) e.nmi_pending = k.nmi.pending;
  e.nmi_masked = k.nmi.masked;
  b.set_events(e);
  return 0;
}

long ioctl_Vcpu_GET_DEBUGREGS(Handle& h, unsigned long arg) {
  cpu::DebugRegs d = vcpu_of(h).backend().get_debugregs();
  kvm_debugregs k{};
  for (int i = 0; i < 4; ++i) k.db[i] = d.db[i];
  k.dr6 = d.dr6;
  k.dr7 = d.dr7;
  return get_struct(arg, k);
}

long ioctl_Vcpu_SET_DEBUGREGS(Handle& h, unsigned long arg) {
  kvm_debugregs k;
  if (!read_struct(arg, k)) return -EFAULT;
  if (k.flags) return -EINVAL;
  // kvm_vcpu_ioctl_x86_set_debugregs: the upper halves of DR6/DR7 must be 0.
  if (k.dr6 >> 32 || k.dr7 >> 32) return -EINVAL;
  cpu::DebugRegs d;
  for (int i = 0; i < 4; ++i) d.db[i] = k.db[i];
  d.dr6 = k.dr6;
  d.dr7 = k.dr7;
  vcpu_of(h).backend().set_debugregs(d);
  return 0;
}

long ioctl_Vcpu_INTERRUPT(Handle& h, unsigned long arg) {
  kvm_interrupt irq;
  if (!read_struct(arg, irq)) return -EFAULT;
  if (irq.irq >= 256) return -EINVAL;  // KVM_NR_INTERRUPTS
  if (h.vcpu->irq) {
    // kvm_vcpu_ioctl_interrupt with an in-kernel LAPIC: the PIC must be in
    // user space (split), and one ExtINT vector may wait at a time.
    if (h.vm->irqchip()->full()) return -ENXIO;
    return vcpu_of(h).backend().queue_interrupt(uint8_t(irq.irq)) ? 0 : -EEXIST;
  }
  // kvm_vcpu_ioctl_interrupt without an in-kernel irqchip: queue the vector,
  // replacing one queued before (kvm_queue_interrupt overwrites).
  cpu::VcpuBackend& b = vcpu_of(h).backend();
  if (!b.queue_interrupt(uint8_t(irq.irq))) {
    cpu::Events e = b.get_events();  // reports no exception, so set_events delivers none
    e.interrupt_injected = true;
    e.interrupt_nr = uint8_t(irq.irq);
    b.set_events(e);
  }
  return 0;
}

long ioctl_Vcpu_NMI(Handle& h, unsigned long) {
  vcpu_of(h).backend().queue_nmi();
  return 0;
}

long ioctl_Vcpu_SET_SIGNAL_MASK(Handle& h, unsigned long arg) {
  if (arg == 0) {
    h.vcpu->sigmask.reset();
    return 0;
  }
  kvm_signal_mask hdr;
  if (!copy_from_user(&hdr, arg, anykvm_off_signal_mask_sigset)) return -EFAULT;
  if (hdr.len != 8) return -EINVAL;  // sizeof(kernel sigset_t)
  uint64_t bits;
  if (!copy_from_user(&bits, arg + anykvm_off_signal_mask_sigset, 8)) return -EFAULT;
  sigset_t set;
  sigemptyset(&set);
  for (int s = 1; s <= 64; ++s)
    if (bits & (uint64_t(1) << (s - 1))) sigaddset(&set, s);
  h.vcpu->sigmask = set;
  return 0;
}

long ioctl_Vcpu_ENABLE_CAP(Handle&, unsigned long arg) {
  kvm_enable_cap cap;
  if (!read_struct(arg, cap)) return -EFAULT;
  if (cap.flags) return -EINVAL;
  return -EINVAL;  // no vCPU capability is enableable yet
}

// A signal that KVM_SET_SIGNAL_MASK's mask leaves unblocked is pending for this
// thread: KVM_RUN returns EINTR without consuming it (the client's
// sigtimedwait does).
bool unmasked_signal_pending(const machine::Vcpu& v) {
  if (!v.sigmask) return false;
  sigset_t pend;
  if (sigpending(&pend) != 0) return false;
  for (int s = 1; s < 65; ++s)
    if (sigismember(&pend, s) == 1 && sigismember(&*v.sigmask, s) == 0) return true;
  return false;
}

long ioctl_Vcpu_RUN(Handle& h, unsigned long) {
  machine::Vcpu& v = vcpu_of(h);
  auto* run = reinterpret_cast<kvm_run*>(v.run_area());
  cpu::VcpuBackend& b = v.backend();
  if (v.mmio_read_pending) {
    v.mmio_read_pending = false;
    b.complete_mmio_read(std::span<const uint8_t>(run->mmio.data, std::min<uint32_t>(run->mmio.len, 8)));
  }
  machine::Irqchip* chip = v.irq ? h.vm->irqchip() : nullptr;
  if (!chip) b.set_cr8(run->cr8);  // with an in-kernel LAPIC the TPR is its own
  cpu::RunControl ctl;
  ctl.immediate_exit = &run->immediate_exit;
  ctl.kick = &v.kick_flag();
  // dm_request_for_irq_injection: ignored while the PIC is in the kernel.
  ctl.request_interrupt_window = run->request_interrupt_window && !(chip && chip->full());
  ctl.pio_page = v.pio_page();
  cpu::VcpuExit ex;
  if (unmasked_signal_pending(v)) {
    ex.reason = cpu::ExitReason::Interrupted;
  } else {
    ex = b.run(ctl);
    // Without an irqchip (whose buses take them first) an ioeventfd's write
    // still never reaches user space: signal it and carry on (eventfd.c).
    if (!v.irq)
      while (h.vm->ioeventfds().take_exit(ex, v.pio_page())) ex = b.run(ctl);
  }
  run->if_flag = b.if_flag();
  run->ready_for_interrupt_injection = b.ready_for_interrupt_injection();
  run->cr8 = b.cr8();
  run->apic_base = b.apic_base();
  if (chip) {  // post_kvm_run_save with an in-kernel LAPIC
    if (chip->full()) run->ready_for_interrupt_injection = 1;  // pic_in_kernel
    run->cr8 = chip->cr8(*v.irq);
    run->apic_base = chip->apic_base(*v.irq);
  }
  run->flags = 0;
  switch (ex.reason) {
    case cpu::ExitReason::Interrupted:
      run->exit_reason = KVM_EXIT_INTR;
      return -EINTR;
    case cpu::ExitReason::Again:
      return -EAGAIN;
    case cpu::ExitReason::Io:
      run->exit_reason = KVM_EXIT_IO;
      run->io.direction = ex.io.out ? KVM_EXIT_IO_OUT : KVM_EXIT_IO_IN;
      run->io.size = ex.io.size;
      run->io.port = ex.io.port;
      run->io.count = ex.io.count;
      run->io.data_offset = machine::k_pio_page_offset;
      return 0;
    case cpu::ExitReason::Mmio:
      run->exit_reason = KVM_EXIT_MMIO;
      run->mmio.phys_addr = ex.mmio.gpa;
      std::memcpy(run->mmio.data, ex.mmio.data, 8);
      run->mmio.len = ex.mmio.len;
      run->mmio.is_write = ex.mmio.is_write;
      v.mmio_read_pending = !ex.mmio.is_write;
      return 0;
    case cpu::ExitReason::Hlt:
      run->exit_reason = KVM_EXIT_HLT;
      return 0;
    case cpu::ExitReason::IoapicEoi:
      run->exit_reason = KVM_EXIT_IOAPIC_EOI;
      run->eoi.vector = ex.eoi_vector;
      return 0;
    case cpu::ExitReason::IrqWindowOpen:
      run->exit_reason = KVM_EXIT_IRQ_WINDOW_OPEN;
      return 0;
    case cpu::ExitReason::Shutdown:
      run->exit_reason = KVM_EXIT_SHUTDOWN;
      return 0;
    case cpu::ExitReason::InternalError:
      run->exit_reason = KVM_EXIT_INTERNAL_ERROR;
      run->internal.suberror = uint32_t(ex.internal.suberror);
      run->internal.ndata = std::min<uint32_t>(ex.internal.ndata, 16);
      for (uint32_t i = 0; i < run->internal.ndata; ++i) run->internal.data[i] = ex.internal.data[i];
      return 0;
    case cpu::ExitReason::Debug:
      run->exit_reason = KVM_EXIT_DEBUG;
      run->debug.arch.exception = ex.debug.exception;
      run->debug.arch.pc = ex.debug.pc;
      run->debug.arch.dr6 = ex.debug.dr6;
      run->debug.arch.dr7 = ex.debug.dr7;
      return 0;
  }
  run->exit_reason = KVM_EXIT_UNKNOWN;
  return 0;
}

}  // namespace

long vcpu_ioctl(Handle& h, uint32_t req, unsigned long arg) {
  enum class ArgKind : uint8_t { None, Int, Ptr, Any };
  struct Row {
    FdKind kind;
    ArgKind arg;
    long (*handler)(Handle&, unsigned long);
  };
#define IOCTL_Sys(name) nullptr
#define IOCTL_Vm(name) nullptr
#define IOCTL_Vcpu(name) ioctl_Vcpu_##name
  static const Row rows[] = {
#define IOCTL(name, kind, argkind) {FdKind::kind, ArgKind::argkind, IOCTL_##kind(name)},
#include "kvmapi/ioctls.def"
#undef IOCTL
  };
#undef IOCTL_Sys
#undef IOCTL_Vm
#undef IOCTL_Vcpu
  std::lock_guard<std::mutex> g(h.vcpu->mutex());  // vcpu->mutex
  for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); ++i) {
    if (rows[i].kind != FdKind::Vcpu || anykvm_ioctl_numbers[i] != req) continue;
    if (rows[i].arg == ArgKind::None && arg != 0) return -EINVAL;
    // The engine signals faults and MMIO with C++ exceptions inside its run
    // loop; one escaping a state ioctl (e.g. an injected exception whose IVT is
    // not RAM) must not unwind into a C client.
    try {
      return rows[i].handler(h, arg);
    } catch (...) {
      return -EFAULT;
    }
  }
  return -ENOTTY;
}

bool copy_cpuid_entries_to_user(unsigned long arg, const std::vector<cpu::CpuidEntry>& list) {
  std::vector<kvm_cpuid_entry2> e(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    e[i] = kvm_cpuid_entry2{};
    e[i].function = list[i].function;
    e[i].index = list[i].index;
    e[i].flags = list[i].flags;
    e[i].eax = list[i].eax;
    e[i].ebx = list[i].ebx;
    e[i].ecx = list[i].ecx;
    e[i].edx = list[i].edx;
  }
  return copy_to_user(arg + anykvm_off_cpuid2_entries, e.data(), e.size() * sizeof(kvm_cpuid_entry2));
}

}  // namespace anykvm::kvmapi
