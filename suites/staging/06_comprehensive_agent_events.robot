*** Settings ***
Documentation       The chat keeps working the way users use it: several messages, messages in
...                 flight together, reconnecting, and bad input that must not break the session.
Resource            ../../resources/agent_chat.resource
Test Tags           events


*** Test Cases ***
Several Runs On One Connection Each Complete
    An Authenticated User Is Connected    multi-run-user
    FOR    ${i}    IN RANGE    3
        User Chats And The Agent Answers Correctly    Question ${i}
    END

Two Runs In Flight On One Connection Both Complete
    Target Should Support    runs_in_flight
    An Authenticated User Is Connected    parallel-run-user
    ${first}=    User Sends A Chat Message    First question
    ${second}=    User Sends A Chat Message    Second question
    ${result}=    Collect Agent Run    ${second}
    Agent Run Should Complete With All Required Events    ${result}
    ${result}=    Collect Agent Run    ${first}
    Agent Run Should Complete With All Required Events    ${result}

Run After Reconnecting Completes
    An Authenticated User Is Connected    reconnect-user
    User Chats And The Agent Answers Correctly    Before reconnecting
    Close Connection    reconnect-user
    An Authenticated User Is Connected    reconnect-user
    User Chats And The Agent Answers Correctly    After reconnecting

Invalid JSON Gets An Error Frame And The Session Survives
    An Authenticated User Is Connected    bad-json-user
    Server Should Answer Bad Input    invalid_json
    User Chats And The Agent Answers Correctly    Still there?

Unknown Message Type Is Answered And The Session Survives
    An Authenticated User Is Connected    unknown-type-user
    Server Should Answer Bad Input    unknown_message
    User Chats And The Agent Answers Correctly    Still there?
