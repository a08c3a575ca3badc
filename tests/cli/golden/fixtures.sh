# fixtures.sh: the golden fixtures, shared by regen.sh (virsh) and ../test_cli_golden.sh (qsnap). Source it.
#
#   golden_make_fixtures DIR   writes vm1.xml, s1..s8.xml, o1..o5.xml, new.xml and the EDITOR scripts to DIR
#   golden_fixture_setup F     prints the commands that build fixture F, one virsh command per line
#   golden_domain_xml [NAME UUID]   the domain definition (default: vm1)
#   golden_snap DIR FILE NAME PARENT CTIME STATE MEMORY DISKS DESCRIPTION [DOMAIN UUID]
#     MEMORY: no | internal | external:PATH     DISKS: internal | external (overlays under /var/lib/qsnap/vm1)

golden_domain_xml() {
    local name=${1:-vm1} uuid=${2:-11111111-2222-3333-4444-555555555555}
    cat <<XML
<domain type='test'>
  <name>$name</name>
  <uuid>$uuid</uuid>
  <memory unit='KiB'>1048576</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <disk type='file' device='disk'>
      <source file='/var/lib/qsnap/vm1/vda.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <source file='/var/lib/qsnap/vm1/vdb.qcow2'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <graphics type='vnc' port='-1' autoport='yes' passwd='secret'/>
  </devices>
</domain>
XML
}

golden_snap() {
    local dir=$1 file=$2 name=$3 parent=$4 ctime=$5 state=$6 mem=$7 disks=$8 desc=$9 dom=${10:-} uuid=${11:-} d
    {
        echo "<domainsnapshot>"
        echo "  <name>$name</name>"
        [ -n "$desc" ] && echo "  <description>$desc</description>"
        echo "  <state>$state</state>"
        [ -n "$parent" ] && echo "  <parent><name>$parent</name></parent>"
        echo "  <creationTime>$ctime</creationTime>"
        case $mem in
        external:*) echo "  <memory snapshot='external' file='${mem#external:}'/>" ;;
        *) echo "  <memory snapshot='$mem'/>" ;;
        esac
        echo "  <disks>"
        for d in vda vdb; do
            if [ "$disks" = external ]; then
                echo "    <disk name='$d' snapshot='external' type='file'>"
                echo "      <source file='/var/lib/qsnap/vm1/$d.$ctime.qcow2'/>"
                echo "    </disk>"
            else
                echo "    <disk name='$d' snapshot='$disks'/>"
            fi
        done
        echo "  </disks>"
        golden_domain_xml $dom $uuid | sed 's/^/  /'
        echo "</domainsnapshot>"
    } >"$dir/$file"
}

golden_make_fixtures() {
    local dir=$1
    golden_domain_xml >"$dir/vm1.xml"
    golden_snap "$dir" s1.xml 'base' '' 1700000000 shutoff no internal 'Base install'
    golden_snap "$dir" s2.xml 'after update' 'base' 1700003600 running internal internal 'after apt upgrade'
    golden_snap "$dir" s3.xml $'cafe\xcc\x81' 'base' 1700007200 paused internal internal ''
    golden_snap "$dir" s4.xml '快照-一' 'after update' 1700010800 running internal internal 'wide name'
    golden_snap "$dir" s5.xml 'ext-mem' 'after update' 1700014400 running external:/var/lib/qsnap/vm1/ext-mem.mem external ''
    golden_snap "$dir" s6.xml 'disk-only' 'ext-mem' 1700018000 disk-snapshot no external ''
    golden_snap "$dir" s7.xml 'Beta' '' 1700021600 shutoff no internal \
        'A long description that goes on and on, well past eighty columns, to show that virsh prints it untouched in the XML'
    golden_snap "$dir" s8.xml 'alpha' 'base' 1700025200 shutoff no internal ''
    # names a table must escape (tab, U+0085 NEL, a literal backslash-x) and two names equal but for case
    golden_snap "$dir" o1.xml 'tab&#9;name' '' 1700000000 shutoff no internal ''
    golden_snap "$dir" o2.xml 'nel&#133;x' 'tab&#9;name' 1700000060 shutoff no internal ''
    golden_snap "$dir" o3.xml 'back\\xslash' '' 1700000120 shutoff no internal ''
    golden_snap "$dir" o4.xml 'dup' '' 1700000180 shutoff no internal ''
    golden_snap "$dir" o5.xml 'DUP' '' 1700000240 shutoff no internal ''
    # a stand-alone snapshot document for snapshot-create / --redefine cases
    printf '<domainsnapshot>\n  <name>fromxml</name>\n  <description>made from xml</description>\n</domainsnapshot>\n' \
        >"$dir/new.xml"
    # an EDITOR that changes the description, one that changes nothing, one that renames
    printf '#!/bin/sh\nsed -i "s|<description>Base install</description>|<description>Edited</description>|" "$1"\n' >"$dir/ed-desc"
    printf '#!/bin/sh\nexit 0\n' >"$dir/ed-none"
    printf '#!/bin/sh\nsed -i "s|<name>base</name>|<name>base2</name>|" "$1"\n' >"$dir/ed-rename"
    chmod +x "$dir/ed-desc" "$dir/ed-none" "$dir/ed-rename"
}

golden_fixture_setup() {
    case $1 in
    vm1)
        echo 'define vm1.xml'
        for i in 1 2 3 4 5 6 7 8; do echo "snapshot-create vm1 s$i.xml --redefine"; done
        echo "snapshot-current vm1 'after update'" ;;
    empty) echo 'define vm1.xml' ;;
    odd)
        echo 'define vm1.xml'
        for i in 1 2 3 4 5; do echo "snapshot-create vm1 o$i.xml --redefine"; done ;;
    test) printf 'snapshot-create-as test t%s\n' 1 2 3 ;;
    *) echo "fixtures.sh: unknown fixture '$1'" >&2; return 2 ;;
    esac
}
