*** Settings ***
Documentation       Each user sees only their own agent runs, also when many chat at once,
...                 and a thread belongs to the user who started it.
Resource            ../../resources/agent_chat.resource
Test Tags           isolation    critical


*** Test Cases ***
Two Users Chatting At Once See Only Their Own Events
    Users Are Connected    iso-alice    iso-bob
    ${runs}=    Every User Sends A Chat Message    iso-alice    iso-bob
    Every Run Should Complete Correctly And Privately    ${runs}

Ten Users Chatting At Once See Only Their Own Events
    @{users}=    Evaluate    [f"iso-user-{i}" for i in range(10)]
    Users Are Connected    @{users}
    ${runs}=    Every User Sends A Chat Message    @{users}
    Every Run Should Complete Correctly And Privately    ${runs}

A Thread Belongs To Its User
    Target Should Support    thread_join
    An Authenticated User Is Connected    thread-owner
    ${intruder}=    A Token For User    thread-intruder
    Thread Should Not Be Joinable By    ${intruder}    alias=thread-owner
