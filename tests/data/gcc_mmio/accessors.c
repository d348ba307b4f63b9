/* MMIO accessors as drivers write them: volatile pointers of every width. */
/* No libc headers: they are often missing for -m32. */
typedef unsigned char uint8_t; typedef unsigned short uint16_t; typedef unsigned int uint32_t;
typedef unsigned long long uint64_t; typedef signed char int8_t; typedef short int16_t;
typedef int int32_t; typedef long long int64_t;
#define ACC(T, n) \
  T rd##n(volatile T *p) { return *p; } \
  void wr##n(volatile T *p, T v) { *p = v; } \
  void wri##n(volatile T *p) { *p = (T)0x5a; } \
  void or##n(volatile T *p, T v) { *p |= v; } \
  void and##n(volatile T *p) { *p &= (T)~0x10; } \
  void add##n(volatile T *p) { *p += 3; } \
  void inc##n(volatile T *p) { ++*p; } \
  int tst##n(volatile T *p) { return (*p & 4) != 0; } \
  int cmp##n(volatile T *p) { return *p == (T)7; } \
  T rdo##n(volatile T *p) { return p[3]; }
ACC(uint8_t, 8) ACC(uint16_t, 16) ACC(uint32_t, 32) ACC(uint64_t, 64)
int32_t sx8(volatile int8_t *p) { return *p; }
int32_t sx16(volatile int16_t *p) { return *p; }
int64_t sx32(volatile int32_t *p) { return *p; }
void cpy32(volatile uint32_t *d, const uint32_t *s, int n) { for (int i = 0; i < n; i++) d[i] = s[i]; }
