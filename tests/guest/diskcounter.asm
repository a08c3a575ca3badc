; diskcounter.asm: a test guest that writes to its IDE disk without end, so tests can tell whether RAM and
; disk in a snapshot are of one instant (test_live_race_live).
;
; Every round: pending = done + 1; sector 64 of the primary IDE master gets pending in all its 128 dwords
; (PIO, LBA28, interrupts off); once the drive is no longer busy, done = pending and the counter goes up.
; So at any instant the disk's sector holds done or, while a write is in flight, pending - never more. A
; snapshot whose disk holds less than done let the guest run between the disk switch and the RAM capture.
;
; RAM, in its own page at 0x9000 (as counter.asm, so the harness reads the counter and magic alike):
;   0x9000  counter, 64-bit (rounds finished)   0x9008  magic 0x51534E50
;   0x9010  pending (dword)                     0x9014  done (dword)
; The sector's data is built at 0xa000.

        bits 16
        org 0x7c00

COUNTER equ 0x9000
MAGIC   equ 0x51534e50
PENDING equ 0x9010
DONE    equ 0x9014
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
        mov dword [COUNTER + 8], MAGIC
        mov dx, 0x3f6                   ; device control: nIEN, no interrupts from the drive
        mov al, 0x02
        out dx, al
.round:
        mov eax, [DONE]
        inc eax
        mov [PENDING], eax
        mov di, SECBUF
        mov cx, 128
        rep stosd
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
        mov al, 0x30                    ; WRITE SECTORS
        out dx, al
.drq:
        in al, dx
        test al, 0x01                   ; ERR: stop counting, the test sees the counter stand still
        jnz .halt
        test al, 0x08
        jz .drq
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
.halt:
        hlt
        jmp .halt

wait_ready:                             ; until BSY is clear
        mov dx, 0x1f7
.busy:
        in al, dx
        test al, 0x80
        jnz .busy
        ret

        times 510 - ($ - $$) db 0
        dw 0xaa55
