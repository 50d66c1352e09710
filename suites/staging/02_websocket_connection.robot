*** Settings ***
Documentation       An authenticated user can open a WebSocket and the server greets and answers.
Resource            ../../resources/agent_chat.resource
Test Tags           smoke    connection


*** Test Cases ***
Connection Is Established With A Welcome Frame
    [Tags]    critical
    ${token}=    A Token For User    conn-welcome
    Connect To Agent WebSocket    ${token}    alias=conn-welcome
    ${expected}=    Get Token Subject    ${token}
    ${info}=    Get Connection Info
    Should Match Regexp    ${info}[connection_id]    .+
    ...    msg=connection_established carried no connection_id
    Should Be Equal    ${info}[user_id]    ${expected}
    ...    msg=The welcome frame named user ${info}[user_id], expected the token's user ${expected}

Server Echoes The JWT Subprotocol
    An Authenticated User Is Connected    conn-subprotocol    auth=subprotocol
    ${info}=    Get Connection Info
    Should Be Equal    ${info}[subprotocol]    jwt-auth
    ...    msg=The server selected subprotocol '${info}[subprotocol]', expected 'jwt-auth'

Ping Is Answered With Pong
    An Authenticated User Is Connected    conn-ping
    Send Ping
    ${pong}=    Wait For Event    pong    timeout=5s
    Should Not Be Equal    ${pong}[timestamp]    ${None}    msg=pong carried no timestamp

Bearer Header Authentication Is Accepted
    An Authenticated User Is Connected    conn-bearer    auth=bearer
    Send Ping
    Wait For Event    pong    timeout=5s
