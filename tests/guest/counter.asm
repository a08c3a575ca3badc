; counter.asm: qsnap's test guest - a boot sector that counts forever in RAM so tests can see memory state.
;
; Layout at physical 0x9000 (its own 4 KiB page, away from the code: TCG keeps translated code fast when
; the page it writes is not the page it runs from):
;   0x9000  counter, low dword   (incremented in a tight loop)
;   0x9004  counter, high dword  (carry from the low dword)
;   0x9008  magic 0x51534E50 ('PNSQ' in memory, "QSNP" as a dword) - proves a reader found the right place
; Read it with HMP `xp /3wx 0x9000`.

        bits 16
        org 0x7c00

COUNTER equ 0x9000
MAGIC   equ 0x51534e50

start:
        cli                             ; no interrupts: nothing but the loop touches memory
        xor ax, ax
        mov ds, ax
        mov es, ax
        mov ss, ax
        mov sp, 0x7c00
        cld
        mov dword [COUNTER], 0
        mov dword [COUNTER + 4], 0
        mov dword [COUNTER + 8], MAGIC
.loop:
        add dword [COUNTER], 1
        adc dword [COUNTER + 4], 0
        jmp .loop

        times 510 - ($ - $$) db 0
        dw 0xaa55
