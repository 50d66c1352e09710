*** Settings ***
Documentation       Each user sees only their own agent runs, also when many chat at once.
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
