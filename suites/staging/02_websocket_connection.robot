*** Settings ***
Documentation       An authenticated user can open a WebSocket and the server greets and answers,
...                 the way the target's dialect says it does.
Resource            ../../resources/agent_chat.resource
Test Tags           smoke    connection


*** Test Cases ***
Connection Is Established With A Welcome Frame
    [Tags]    critical
    Target Should Support    welcome
    An Authenticated User Is Connected    conn-welcome
    ${info}=    Get Connection Info
    Should Match Regexp    ${info}[connection_id]    .+
    ...    msg=The welcome frame carried no connection_id

Server Selects The Expected Subprotocol
    Target Should Support    subprotocol_auth
    An Authenticated User Is Connected    conn-subprotocol    auth=subprotocol
    Server Should Select The Expected Subprotocol

Ping Is Answered With Pong
    Target Should Support    ping
    An Authenticated User Is Connected    conn-ping
    Send Ping
    Wait For Event    pong    timeout=5s

Bearer Header Authentication Is Accepted
    Target Should Support    bearer_auth
    An Authenticated User Is Connected    conn-bearer    auth=bearer
    The Connection Should Work
