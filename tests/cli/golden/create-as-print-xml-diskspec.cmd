# fixture=test
snapshot-create-as test s1 --print-xml --disk-only --diskspec vda,snapshot=external,file=/var/lib/qsnap/vda.s1.qcow2 --diskspec vdb,snapshot=no
