# fixture=test
snapshot-create-as test s1 --print-xml --diskspec vda,snapshot=external,driver=qcow2,stype=file,file=/o/vda.qcow2
