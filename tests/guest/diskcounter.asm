; diskcounter.asm: a test guest that writes to its IDE disk without end, so tests can tell whether RAM and
; disk in a snapshot are of one instant (test_guest_io_live).
;
; At boot it reads sector 64 of the primary IDE master and goes on from what it holds: done = that value
; when all 128 dwords agree (a blank disk: 0), so a guest booted on a disk-only snapshot's disk counts on
; from the value frozen there. A sector whose dwords differ (a torn write) sets the torn flag and halts.
; Then every round: pending = done + 1; the sector gets pending in all its 128 dwords (PIO, LBA28,
; interrupts off); once the drive is no longer busy, done = pending and the counter goes up. So at any
; instant the disk's sector holds done or, while a write is in flight, pending - never more. A snapshot
; whose disk holds less than done let the guest run between the disk switch and the RAM capture.
;
; RAM, in its own page at 0x9000 (as counter.asm, so the harness reads the counter and magic alike):
;   0x9000  counter, 64-bit (rounds finished)   0x9008  magic 0x51534E50 (set once booted)
;   0x9010  pending (dword)                     0x9014  done (dword)
;   0x9018  the sector's value read at boot     0x901c  torn flag: 1 when that sector's dwords differed
; The sector's data is built and read at 0xa000.

        bits 16
        org 0x7c00

COUNTER equ 0x9000
MAGIC   equ 0x51534e50
PENDING equ 0x9010
DONE    equ 0x9014
BOOTVAL equ 0x9018
TORN    equ 0x901c
SECBUF  equ 0xa000
LBA     equ 64

start:
        cli
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 0x7c00
        cld
        mov dword [COUNTER], 0
        mov dword [COUNTER + 4], 0
        mov dword [PENDING], 0
        mov dword [DONE], 0
        mov dword [BOOTVAL], 0
        mov dword [TORN], 0
        mov dx, 0x3f6                   ; device control: nIEN, no interrupts from the drive
        mov al, 0x02
        out dx, al
        mov al, 0x20                    ; READ SECTORS
        call command
        mov di, SECBUF
        mov cx, 256
        mov dx, 0x1f0
        rep insw
        call wait_ready
        mov si, SECBUF                  ; all 128 dwords equal to the first, or the sector is torn
        mov eax, [si]
        mov cx, 128
.cmp:
        cmp eax, [si]
        jne .torn
        add si, 4
        loop .cmp
        mov [BOOTVAL], eax
        mov [DONE], eax
        mov [PENDING], eax
        mov dword [COUNTER + 8], MAGIC
.round:
        mov eax, [DONE]
        inc eax
        mov [PENDING], eax
        mov di, SECBUF
        mov cx, 128
        rep stosd
        mov al, 0x30                    ; WRITE SECTORS
        call command
        mov si, SECBUF
        mov cx, 256
        mov dx, 0x1f0
        rep outsw
        call wait_ready
        mov eax, [PENDING]
        mov [DONE], eax
        add dword [COUNTER], 1
        adc dword [COUNTER + 4], 0
        jmp .round
.torn:
        mov dword [TORN], 1
        mov dword [COUNTER + 8], MAGIC
.halt:
        hlt
        jmp .halt

; Sends the one-sector command AL for sector LBA of the master and returns once the drive asks for the data
; (DRQ); an error (ERR) halts: the test sees the counter stand still.
command:
        push ax
        call wait_ready
        mov dx, 0x1f6
        mov al, 0xe0                    ; master, LBA, LBA bits 24-27 = 0
        out dx, al
        mov dx, 0x1f2
        mov al, 1                       ; one sector
        out dx, al
        mov dx, 0x1f3
        mov al, LBA
        out dx, al
        mov dx, 0x1f4
        xor al, al
        out dx, al
        mov dx, 0x1f5
        out dx, al
        mov dx, 0x1f7
        pop ax
        out dx, al
.drq:
        in al, dx
        test al, 0x01
        jnz start.halt
        test al, 0x08
        jz .drq
        ret

wait_ready:                             ; until BSY is clear
        mov dx, 0x1f7
.busy:
        in al, dx
        test al, 0x80
        jnz .busy
        ret

        times 510 - ($ - $$) db 0
        dw 0xaa55
