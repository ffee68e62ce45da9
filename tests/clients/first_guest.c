/* A first KVM client in the style of the classic "Using the KVM API" example:
 * only <linux/kvm.h> and open/ioctl/mmap. It runs two tiny guests, one in
 * real mode and one in flat 32-bit protected mode (set up with KVM_SET_SREGS),
 * each of which
 *   - adds two numbers given in registers and OUTs the ASCII result to 0x3f8
 *     (KVM_EXIT_IO, OUT),
 *   - INs from 0x3f8 (KVM_EXIT_IO, IN: the client writes the data into the PIO
 *     page before re-entering) and OUTs that value plus one (checked here),
 *   - reads and writes an address outside every memslot (KVM_EXIT_MMIO both
 *     ways; the read is completed with client data on re-entry, the written
 *     value is that data plus one),
 *   - HLTs (KVM_EXIT_HLT).
 * Built twice (tests/clients/CMakeLists.txt): linked against libanykvm.so and
 * as a plain binary run under `anykvm exec --`; it also runs unchanged on a
 * real /dev/kvm, which is how its expectations were checked.
 * Exit status 0 when every exit and the final registers are as expected. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static int g_failures;

#define CHECK(cond, ...)                                            \
  do {                                                              \
    if (!(cond)) {                                                  \
      fprintf(stderr, "first_guest: FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__);                                 \
      fputc('\n', stderr);                                          \
      g_failures++;                                                 \
      return -1;                                                    \
    }                                                               \
  } while (0)

#define SYS(call)                                                              \
  ({                                                                           \
    long r_ = (long)(call);                                                    \
    if (r_ < 0) {                                                              \
      fprintf(stderr, "first_guest: %s failed: %s\n", #call, strerror(errno)); \
      exit(1);                                                                 \
    }                                                                          \
    r_;                                                                        \
  })

/* Real mode, loaded at 0x1000 (CS = 0, IP = 0x1000):
 *   mov dx, 0x3f8 ; add al, bl ; add al, '0' ; out dx, al
 *   in al, dx ; inc al ; out dx, al
 *   mov bx, [0x3000] ; add bx, 1 ; mov [0x3004], bx ; hlt */
static const uint8_t k_real_code[] = {
    0xba, 0xf8, 0x03, 0x00, 0xd8, 0x04, 0x30, 0xee, 0xec, 0xfe, 0xc0, 0xee,
    0x8b, 0x1e, 0x00, 0x30, 0x83, 0xc3, 0x01, 0x89, 0x1e, 0x04, 0x30, 0xf4,
};

/* Flat 32-bit protected mode, loaded at 0x1000:
 *   mov edx, 0x3f8 ; add eax, ebx ; add al, '0' ; out dx, al
 *   in eax, dx ; inc eax ; out dx, eax
 *   mov ebx, [0x100000] ; add ebx, 1 ; mov [0x100008], ebx ; hlt */
static const uint8_t k_prot_code[] = {
    0xba, 0xf8, 0x03, 0x00, 0x00, 0x01, 0xd8, 0x04, 0x30, 0xee, 0xed, 0x40, 0xef, 0x8b, 0x1d,
    0x00, 0x00, 0x10, 0x00, 0x83, 0xc3, 0x01, 0x89, 0x1d, 0x08, 0x00, 0x10, 0x00, 0xf4,
};

struct mode {
  const char* name;
  const uint8_t* code;
  size_t code_len;
  int protected_mode;
  uint32_t io_width;   /* size of the IN and the second OUT */
  uint64_t in_data;    /* what the client answers the IN with */
  uint64_t mmio_read;  /* guest-physical address read (outside every slot) */
  uint64_t mmio_write; /* guest-physical address written */
  uint32_t mmio_len;
  uint64_t mmio_data; /* what the client answers the read with */
};

static const struct mode k_modes[] = {
    {"real mode", k_real_code, sizeof(k_real_code), 0, 1, 0x41, 0x3000, 0x3004, 2, 0x1234},
    {"32-bit protected mode", k_prot_code, sizeof(k_prot_code), 1, 4, 0x41424344, 0x100000, 0x100008, 4, 0x89abcdef},
};

static uint64_t mask(uint32_t bytes) { return bytes >= 8 ? ~0ull : (1ull << (8 * bytes)) - 1; }

static int run(int vcpu, struct kvm_run* run_area, uint32_t expected_exit, const char* what) {
  int r = ioctl(vcpu, KVM_RUN, 0);
  CHECK(r == 0, "KVM_RUN (%s) returned %d (%s)", what, r, strerror(errno));
  CHECK(run_area->exit_reason == expected_exit, "%s: exit_reason %u, expected %u", what, run_area->exit_reason,
        expected_exit);
  return 0;
}

static int check_io(struct kvm_run* run_area, uint8_t direction, uint32_t size, const char* what) {
  CHECK(run_area->io.direction == direction, "%s: io.direction %u", what, run_area->io.direction);
  CHECK(run_area->io.port == 0x3f8, "%s: io.port 0x%x", what, run_area->io.port);
  CHECK(run_area->io.size == size, "%s: io.size %u", what, run_area->io.size);
  CHECK(run_area->io.count == 1, "%s: io.count %u", what, run_area->io.count);
  return 0;
}

static int run_guest(int kvm, const struct mode* m) {
  int vm = SYS(ioctl(kvm, KVM_CREATE_VM, 0));
  const size_t mem_size = 0x1000;
  uint8_t* mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) return perror("mmap"), -1;
  memcpy(mem, m->code, m->code_len);
  struct kvm_userspace_memory_region region = {
      .slot = 0, .flags = 0, .guest_phys_addr = 0x1000, .memory_size = mem_size, .userspace_addr = (uint64_t)mem};
  SYS(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region));

  int vcpu = SYS(ioctl(vm, KVM_CREATE_VCPU, 0));
  int mmap_size = SYS(ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0));
  CHECK((size_t)mmap_size >= sizeof(struct kvm_run), "mmap size %d", mmap_size);
  struct kvm_run* run_area = mmap(NULL, mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run_area == MAP_FAILED) return perror("mmap vcpu"), -1;

  struct kvm_sregs sregs;
  SYS(ioctl(vcpu, KVM_GET_SREGS, &sregs));
  if (!m->protected_mode) {
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
  } else {
    struct kvm_segment code = {.base = 0, .limit = 0xffffffff, .selector = 8, .type = 11, .present = 1,
                               .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1};
    struct kvm_segment data = code;
    data.type = 3;
    data.selector = 16;
    sregs.cs = code;
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
    sregs.cr0 |= 1; /* PE */
  }
  SYS(ioctl(vcpu, KVM_SET_SREGS, &sregs));

  struct kvm_regs regs;
  memset(&regs, 0, sizeof(regs));
  regs.rip = 0x1000;
  regs.rax = 2;
  regs.rbx = 3;
  regs.rflags = 0x2;
  SYS(ioctl(vcpu, KVM_SET_REGS, &regs));

  uint8_t* pio = (uint8_t*)run_area;

  /* 1. OUT of 2 + 3 + '0'. */
  if (run(vcpu, run_area, KVM_EXIT_IO, "first OUT") || check_io(run_area, KVM_EXIT_IO_OUT, 1, "first OUT")) return -1;
  CHECK(pio[run_area->io.data_offset] == '5', "OUT data '%c'", pio[run_area->io.data_offset]);
  printf("%s: guest wrote '%c' to port 0x3f8\n", m->name, pio[run_area->io.data_offset]);

  /* 2. IN: answered through the PIO data page on re-entry. */
  if (run(vcpu, run_area, KVM_EXIT_IO, "IN") || check_io(run_area, KVM_EXIT_IO_IN, m->io_width, "IN")) return -1;
  memcpy(pio + run_area->io.data_offset, &m->in_data, m->io_width);

  /* 3. OUT of the IN value plus one. */
  if (run(vcpu, run_area, KVM_EXIT_IO, "second OUT") ||
      check_io(run_area, KVM_EXIT_IO_OUT, m->io_width, "second OUT"))
    return -1;
  uint64_t out = 0;
  memcpy(&out, pio + run_area->io.data_offset, m->io_width);
  CHECK(out == ((m->in_data + 1) & mask(m->io_width)), "second OUT data 0x%llx", (unsigned long long)out);

  /* 4. MMIO read outside every slot, completed with our data on re-entry. */
  if (run(vcpu, run_area, KVM_EXIT_MMIO, "MMIO read")) return -1;
  CHECK(!run_area->mmio.is_write, "MMIO read reported as write");
  CHECK(run_area->mmio.phys_addr == m->mmio_read, "MMIO read at 0x%llx", (unsigned long long)run_area->mmio.phys_addr);
  CHECK(run_area->mmio.len == m->mmio_len, "MMIO read len %u", run_area->mmio.len);
  memcpy(run_area->mmio.data, &m->mmio_data, m->mmio_len);

  /* 5. MMIO write of that value plus one. */
  if (run(vcpu, run_area, KVM_EXIT_MMIO, "MMIO write")) return -1;
  CHECK(run_area->mmio.is_write, "MMIO write reported as read");
  CHECK(run_area->mmio.phys_addr == m->mmio_write, "MMIO write at 0x%llx",
        (unsigned long long)run_area->mmio.phys_addr);
  CHECK(run_area->mmio.len == m->mmio_len, "MMIO write len %u", run_area->mmio.len);
  uint64_t written = 0;
  memcpy(&written, run_area->mmio.data, m->mmio_len);
  CHECK(written == ((m->mmio_data + 1) & mask(m->mmio_len)), "MMIO write data 0x%llx", (unsigned long long)written);

  /* 6. HLT. */
  if (run(vcpu, run_area, KVM_EXIT_HLT, "HLT")) return -1;
  SYS(ioctl(vcpu, KVM_GET_REGS, &regs));
  CHECK(regs.rip == 0x1000 + m->code_len, "RIP after HLT 0x%llx", (unsigned long long)regs.rip);
  CHECK((regs.rbx & mask(m->mmio_len)) == ((m->mmio_data + 1) & mask(m->mmio_len)), "RBX 0x%llx",
        (unsigned long long)regs.rbx);
  printf("%s: IN/OUT, MMIO read/write and HLT as expected\n", m->name);

  munmap(run_area, mmap_size);
  close(vcpu);
  close(vm);
  munmap(mem, mem_size);
  return 0;
}

int main(void) {
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) {
    fprintf(stderr, "first_guest: open /dev/kvm: %s\n", strerror(errno));
    return 1;
  }
  int api = ioctl(kvm, KVM_GET_API_VERSION, 0);
  if (api != KVM_API_VERSION) {
    fprintf(stderr, "first_guest: KVM_GET_API_VERSION %d\n", api);
    return 1;
  }
  if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY) <= 0) {
    fprintf(stderr, "first_guest: no KVM_CAP_USER_MEMORY\n");
    return 1;
  }
  for (size_t i = 0; i < sizeof(k_modes) / sizeof(k_modes[0]); ++i) run_guest(kvm, &k_modes[i]);
  close(kvm);
  if (g_failures) {
    fprintf(stderr, "first_guest: %d failure(s)\n", g_failures);
    return 1;
  }
  printf("first_guest: all checks passed\n");
  return 0;
}
